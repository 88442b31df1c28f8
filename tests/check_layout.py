#!/usr/bin/env python3
"""Check that every #include "..." crosses only an allowed arrow.

Usage: check_layout.py [REPO_ROOT]     (default: this script's parent dir)
       check_layout.py --self-test     (proves the check can fail)

Scans *.c and *.h under src/, tools/, cli/ and vm/ (not vm/guest/, a
freestanding guest kernel; tests/, fuzz/ and bench/ may include anything).

    layer         file(s)                 may include (besides itself)
    ------------  ----------------------  --------------------------------
    common        src/common/             zmigrate.h
    codec         src/codec/              zmigrate.h, common
    engine        src/engine/             zmigrate.h, common, codec
    dirty         src/dirty/              zmigrate.h, common
    channel       src/channel/            zmigrate.h, common
    offload       src/offload/            zmigrate.h, common, codec, engine
    migrate       src/migrate/            zmigrate.h, common, codec,
                                          engine, dirty, channel, offload
    tools         tools/                  zmigrate.h
    cli           cli/                    zmigrate.h, tools
    vm            vm/ (not vm/guest/)     zmigrate.h, tools

Everything else is forbidden, e.g. engine <-> channel, codec -> migrate,
common -> anything, dirty -> engine, vm <-> cli, src/ -> tools/cli/vm.
Within src/migrate/, destination.* never includes migrate/source*.h (nor
source.c/...), and source.* never includes migrate/destination*.
Also rejected: a path that climbs ("../x.h"); a src/ file naming another
layer's header by bare name ("packet.h" outside src/engine/); an include
that resolves to no file in the tree (except the generated config.h).

Resolution of "x": the including file's directory, then src/ (for src/
files) or the repository root (for the others: "tools/units.h"), then
include/ ("zmigrate.h"), then the other of src/ and root (so a forbidden
arrow is named rather than reported as missing).

Size rules, printed as notes and never failing: a src/ file over 800
lines; a src/ function over 80 lines (from its column-0 signature to the
column-0 "}") unless a comment within 3 lines above it says "long:" and
why.
"""

import os
import re
import sys
import tempfile

LAYERS = {  # layer -> layers it may include besides itself and zmigrate.h
    'common': set(),
    'codec': {'common'},
    'engine': {'common', 'codec'},
    'dirty': {'common'},
    'channel': {'common'},
    'offload': {'common', 'codec', 'engine'},
    'migrate': {'common', 'codec', 'engine', 'dirty', 'channel', 'offload'},
    'tools': set(),
    'cli': {'tools'},
    'vm': {'tools'},
}
SIDES = {'destination': 'source', 'source': 'destination'}
GENERATED = {'config.h'}
MAX_FILE_LINES, MAX_FUNC_LINES = 800, 80

TOKENS = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\''
                    r'|//[^\n]*|/\*.*?\*/', re.S)
INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.M)


def strip_comments(text):
    """Blank out comments, keeping line numbers (strings stay as they are)."""
    def repl(m):
        s = m.group(0)
        return s if s[0] in '"\'' else '\n' * s.count('\n')
    return TOKENS.sub(repl, text)


def layer_of(rel):
    """The layer of a path relative to the root, or None if outside all."""
    parts = rel.split('/')
    if parts[0] == 'src':
        return parts[1] if len(parts) > 2 else 'src'
    if parts[0] == 'include':
        return 'zmigrate.h'
    if parts[0] in ('tools', 'cli', 'vm') and rel[:9] != 'vm/guest/':
        return parts[0]
    return None


def sources(root):
    """The checked files, as paths relative to root."""
    for top in ('src', 'tools', 'cli', 'vm'):
        for d, _, files in sorted(os.walk(os.path.join(root, top))):
            for f in sorted(files):
                rel = os.path.relpath(os.path.join(d, f), root)
                rel = rel.replace(os.sep, '/')
                if f.endswith(('.c', '.h')) and layer_of(rel):
                    yield rel


def resolve(root, rel, name):
    """The path (relative to root) that "name" included from rel means."""
    here = os.path.dirname(rel)
    order = ['src', 'include', ''] if rel.startswith('src/') else \
        ['', 'include', 'src']
    for base in [here] + order:
        cand = os.path.normpath(os.path.join(base, name))
        if os.path.isfile(os.path.join(root, cand)):
            return cand.replace(os.sep, '/')
    if rel.startswith('src/') and '/' not in name:  # another layer's?
        for d in sorted(os.listdir(os.path.join(root, 'src'))):
            if os.path.isfile(os.path.join(root, 'src', d, name)):
                return f'src/{d}/{name}'
    return None


def side(rel):
    """'source'/'destination' for a migrate/ file of that side, else None."""
    if not rel.startswith('src/migrate/'):
        return None
    base = os.path.basename(rel)
    return next((s for s in SIDES if base.startswith(s)), None)


def check_include(root, rel, name):
    """The reason this include is forbidden, or None."""
    me = layer_of(rel)
    if name in GENERATED:
        return None
    if '..' in name.split('/') or name.startswith('/'):
        return f'climbing or absolute path ("{name}") is not allowed'
    target = resolve(root, rel, name)
    if target is None:
        return f'"{name}" resolves to no file in the tree'
    to = layer_of(target)
    if rel.startswith('src/') and '/' not in name and \
            os.path.dirname(target) != os.path.dirname(rel) and to in LAYERS:
        return f'{me} -> {to} by bare name ("{name}") is not allowed'
    if to != me and to != 'zmigrate.h' and to not in LAYERS.get(me, ()):
        return f'{me} -> {to or target} ("{name}") is not allowed'
    if side(rel) and side(target) == SIDES[side(rel)]:
        return f'{side(rel)} -> {side(target)} ("{name}") is not allowed'
    return None


def size_notes(rel, text):
    lines = text.splitlines()
    notes = []
    if len(lines) > MAX_FILE_LINES:
        notes.append(f'{rel}: {len(lines)} lines (over {MAX_FILE_LINES})')
    start, body = None, False
    for i, line in enumerate(lines):
        code = line.rstrip()
        if start is None:
            head = code.split('(')[0]
            if re.match(r'[A-Za-z_]', code) and '(' in code and \
                    '=' not in head and not code.endswith(';') and \
                    not code.startswith("typedef"):
                start, body = i, code.endswith('{')
        elif not body:  # still in the signature
            if code.endswith(';'):
                start = None  # a prototype over several lines
            body = code.startswith('{') or code.endswith('{')
        elif code.startswith('}'):
            n = i - start + 1
            above = lines[max(0, start - 3):start]
            waived = any(re.search(r'(/\*|//|^\s*\*).*\blong:', a)
                         for a in above)
            if n > MAX_FUNC_LINES and not waived:
                name = re.search(r'(\w+)\s*\(', lines[start]).group(1)
                notes.append(f'{rel}:{start + 1}: {name}() {n} lines '
                             f'(over {MAX_FUNC_LINES})')
            start = None
    return notes


def check(root):
    """(violations, notes, files, includes) for the tree at root."""
    bad, notes, nfiles, nincl = [], [], 0, 0
    for rel in sources(root):
        nfiles += 1
        with open(os.path.join(root, rel), encoding='utf-8',
                  errors='replace') as f:
            text = f.read()
        code = strip_comments(text)
        for m in INCLUDE.finditer(code):
            nincl += 1
            why = check_include(root, rel, m.group(1))
            if why:
                line = code.count('\n', 0, m.start()) + 1
                bad.append(f'{rel}:{line}: {why}')
        if rel.startswith('src/'):
            notes += size_notes(rel, text)
    return bad, notes, nfiles, nincl


def report(root):
    bad, notes, nfiles, nincl = check(root)
    for n in notes:
        print(f'note: {n}')
    for b in bad:
        print(b)
    if bad:
        print(f'layout: {len(bad)} forbidden include(s)')
        return 1
    print(f'layout: {nfiles} files, {nincl} includes, all arrows allowed')
    return 0


CLEAN = {
    'include/zmigrate.h': '',
    'src/common/error.h': '#include "zmigrate.h"\n',
    'src/common/error.c': '#include "error.h"\n#include "config.h"\n',
    'src/codec/codec.h': '#include "common/error.h"\n',
    'src/engine/b.h': '#include "codec/codec.h"\n',
    'src/engine/b.c': '#include "b.h"\n// #include "channel/c.h"\n'
                      '/* #include "migrate/session.h" */\n',
    'src/channel/c.h': '#if 1\n#  include "common/error.h"\n#endif\n',
    'src/migrate/session.h': '#include "channel/c.h"\n',
    'src/migrate/source.h': '#include "session.h"\n',
    'src/migrate/source.c': '#include "source.h"\n#include "engine/b.h"\n',
    'src/migrate/destination.c': '#include "session.h"\n',
    'src/migrate/destination.h': '#include "session.h"\n',
    'tools/x.h': '#include "zmigrate.h"\n',
    'tools/x.c': '#include "x.h"\n',
    'cli/main.c': '#include "tools/x.h"\n#include "zmigrate.h"\n',
    'vm/kvm.h': '#include "tools/x.h"\n',
    'vm/kvm.c': '#include "kvm.h"\n',
    'vm/guest/g.c': '#include "cli/anything.h"\n',
    'src/dirty/big.c': '/* long: one table */\nint f(void)\n{\n'
                       + '    x;\n' * 90 + '}\n',
}
BAD = [  # file, include added at its end, reason (+ ' ("{}") is not allowed')
    ('src/common/a.h', 'engine/b.h', 'common -> engine'),
    ('src/engine/b.h', 'channel/c.h', 'engine -> channel'),
    ('src/channel/c.h', 'tools/x.h', 'channel -> tools'),
    ('src/migrate/destination.c', 'source.h', 'destination -> source'),
    ('src/migrate/source.c', 'destination.h', 'source -> destination'),
    ('src/dirty/d.c', 'codec.h', 'dirty -> codec by bare name'),
    ('src/codec/codec.h', '../tools/x.h', 'climbing or absolute path'),
    ('cli/main.c', 'vm/kvm.h', 'cli -> vm'),
    ('tools/x.c', 'common/error.h', 'tools -> common'),
    ('vm/kvm.c', 'nope.h', '"{}" resolves to no file in the tree'),
]


def build(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)


def self_test():
    """Check a clean fake tree, then one with each of BAD added."""
    with tempfile.TemporaryDirectory() as clean, \
            tempfile.TemporaryDirectory() as dirty:
        build(clean, CLEAN)
        got = check(clean)[:2]
        files, want = dict(CLEAN), []
        for rel, name, why in BAD:
            old = files.get(rel, '')
            files[rel] = old + f'#include "{name}"\n'
            line = old.count('\n') + 1
            why += '' if '{}' in why else ' ("{}") is not allowed'
            want.append(f'{rel}:{line}: ' + why.format(name))
        files['src/dirty/big.c'] = files['src/dirty/big.c'].replace(
            'long', 'big')  # no waiver any more
        build(dirty, files)
        got_bad = check(dirty)[:2]
    expect = [([], []),
              (sorted(want), ['src/dirty/big.c:2: f() 93 lines (over 80)'])]
    ok = True
    for tree, (bad, notes), (want_bad, want_notes) in zip(
            ('clean', 'bad'), (got, got_bad), expect):
        for b in sorted(set(bad) ^ set(want_bad)):
            ok = False
            print(f'self-test: {tree} tree: ' +
                  ('not reported: ' if b in want_bad else 'reported: ') + b)
        if notes != want_notes or len(bad) != len(want_bad):
            ok = False
            print(f'self-test: {tree} tree: notes {notes}, '
                  f'expected {want_notes}')
    print(f'self-test: ok, {len(want)} violations found, clean tree passes'
          if ok else 'self-test: FAILED')
    return 0 if ok else 1


def main(argv):
    if argv[1:] == ['--self-test']:
        return self_test()
    if len(argv) > 2 or argv[1:2] and argv[1].startswith('-'):
        print(__doc__.split('\n\n')[1], file=sys.stderr)
        return 2
    here = os.path.dirname(os.path.abspath(__file__))
    return report(argv[1] if len(argv) > 1 else os.path.dirname(here))


if __name__ == '__main__':
    sys.exit(main(sys.argv))
