/*
 * bounds.c - the page size and batch size every entry point accepts
 */
#include "bounds.h"

#include <errno.h>

#include "error.h"
#include "zmigrate.h"

int zm_check_page_size(uint32_t page_size)
{
    if (page_size < ZM_MIN_PAGE_SIZE || page_size > ZM_MAX_PAGE_SIZE ||
        (page_size & (page_size - 1)) != 0) {
        return zm_error(-EINVAL, "page size %u is not a power of two in %u..%u",
                        page_size, ZM_MIN_PAGE_SIZE, ZM_MAX_PAGE_SIZE);
    }
    return 0;
}

int zm_check_batch_pages(uint32_t pages)
{
    if (pages < 1 || pages > ZM_MAX_BATCH_PAGES) {
        return zm_error(-EINVAL, "batch of %u pages outside 1..%u", pages,
                        ZM_MAX_BATCH_PAGES);
    }
    return 0;
}
