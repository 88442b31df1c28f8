/*
 * bounds.h - the page size and batch size every entry point accepts
 */
#ifndef ZM_BOUNDS_H
#define ZM_BOUNDS_H

#include <stdint.h>

/* A power of two in ZM_MIN_PAGE_SIZE..ZM_MAX_PAGE_SIZE; 0 or -EINVAL. */
int zm_check_page_size(uint32_t page_size);

/* 1..ZM_MAX_BATCH_PAGES pages in one packet; 0 or -EINVAL. */
int zm_check_batch_pages(uint32_t pages);

#endif /* ZM_BOUNDS_H */
