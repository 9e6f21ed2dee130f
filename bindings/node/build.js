#!/usr/bin/env node
// Builds build/libmdp.node, the native half of the binding, with the C
// compiler alone: no node-gyp, no download of headers or binaries.
//
// - Node's headers: the running Node's own (PREFIX/include/node, where both
//   Debian's libnode-dev and the nodejs packages put node_api.h and uv.h),
//   or $NODE_INCLUDE_DIR.
// - libmdp: inside the libmdp source tree (../../lib exists), libmdp's C
//   sources are compiled into the addon itself, against Node's uv.h, so the
//   addon needs no libmdp.so and no libuv.so: its uv_* symbols resolve to
//   the libuv inside Node (readelf -d shows only libzmq and libc).  Outside
//   the tree, an installed libmdp is found with pkg-config and its static
//   library (libmdp.a) linked in, for the same reason (libmdp.so would bring
//   a second libuv into the process).
// - Links -lzmq (the system libzmq) and nothing else.
//
// Environment: CC (default cc), CFLAGS (added), NODE_INCLUDE_DIR,
// LIBMDP_FORCE_PKGCONFIG=1 (use the installed libmdp even in the tree).
'use strict';
const fs = require('fs');
const path = require('path');
const os = require('os');
const { execFileSync, spawn } = require('child_process');

const here = __dirname;
const out = path.join(here, 'build');
const target = path.join(out, 'libmdp.node');
const cc = process.env.CC || 'cc';

function fail(msg) {
  console.error(`libmdp build: ${msg}`);
  process.exit(1);
}

function nodeIncludeDir() {
  const cands = [];
  if (process.env.NODE_INCLUDE_DIR) cands.push(process.env.NODE_INCLUDE_DIR);
  cands.push(path.resolve(path.dirname(process.execPath), '..', 'include', 'node'));
  cands.push('/usr/include/node', '/usr/local/include/node');
  for (const d of cands) {
    if (!fs.existsSync(path.join(d, 'node_api.h'))) continue;
    // Node's own uv.h sits next to node_api.h; a Node built against the
    // system's shared libuv (Debian's nodejs 18) may ship none there, and
    // then the system's uv.h is that very libuv's.
    if (!fs.existsSync(path.join(d, 'uv.h')) && !fs.existsSync('/usr/include/uv.h')) {
      fail(`no uv.h next to ${d}/node_api.h nor in /usr/include; on Debian: apt-get install libuv1-dev`);
    }
    return d;
  }
  fail(`no Node headers (node_api.h) in ${cands.join(', ')}; ` +
       "on Debian: apt-get install libnode-dev (or set NODE_INCLUDE_DIR)");
}

function pkgConfig(args) {
  try {
    return execFileSync('pkg-config', args, { encoding: 'utf8' }).trim();
  } catch (e) {
    return null;
  }
}

// The library's sources, as lib/meson.build lists them (one source of truth).
function treeSources(root) {
  const mb = fs.readFileSync(path.join(root, 'lib', 'meson.build'), 'utf8');
  const m = /libmdp_sources\s*=\s*files\(([^)]*)\)/.exec(mb);
  if (!m) fail('cannot read the source list in lib/meson.build');
  return [...m[1].matchAll(/'([^']+\.c)'/g)].map((x) => path.join(root, 'lib', x[1]));
}

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: 'inherit' });
    p.on('error', reject);
    p.on('exit', (code, sig) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} failed (${sig || code})`)));
  });
}

async function main() {
  const nodeInc = nodeIncludeDir();
  const root = path.resolve(here, '..', '..');
  const inTree = fs.existsSync(path.join(root, 'lib', 'broker.c')) &&
                 fs.existsSync(path.join(root, 'include', 'mdp.h')) &&
                 process.env.LIBMDP_FORCE_PKGCONFIG !== '1';
  const zmqFlags = pkgConfig(['--cflags', 'libzmq']);
  if (zmqFlags === null) fail('libzmq not found by pkg-config; on Debian: apt-get install libzmq3-dev pkg-config');
  const zmqLibs = pkgConfig(['--libs', 'libzmq']) || '-lzmq';

  // Node's include directory comes first, so <uv.h> is Node's own.
  const cflags = ['-std=gnu11', '-O2', '-g', '-fPIC', '-fvisibility=hidden',
    '-fno-strict-aliasing', '-Wall', '-Wno-unused-parameter', '-Wno-missing-field-initializers',
    '-I' + nodeInc, ...zmqFlags.split(/\s+/).filter(Boolean)];
  const sources = [path.join(here, 'src', 'addon.c')];
  const linkExtra = [];
  if (inTree) {
    cflags.push('-I' + path.join(root, 'include'), '-I' + path.join(root, 'lib'));
    sources.push(...treeSources(root));
  } else {
    const libdir = pkgConfig(['--variable=libdir', 'libmdp']);
    const inc = pkgConfig(['--cflags-only-I', 'libmdp']);
    if (libdir === null) fail('not in the libmdp tree and pkg-config finds no libmdp; install libmdp-dev');
    const archive = path.join(libdir, 'libmdp.a');
    if (!fs.existsSync(archive)) fail(`${archive} is missing (the binding links libmdp statically)`);
    // Node's headers still come first: libmdp's uv.h include must be Node's.
    cflags.push(...inc.split(/\s+/).filter(Boolean));
    linkExtra.push(archive);
  }
  if (process.env.CFLAGS) cflags.push(...process.env.CFLAGS.split(/\s+/).filter(Boolean));

  fs.mkdirSync(path.join(out, 'obj'), { recursive: true });
  const objs = sources.map((s) => path.join(out, 'obj', path.basename(s).replace(/\.c$/, '.o')));

  // Rebuild only what changed (the tests call this before each run).
  const stamp = JSON.stringify({ cc, cflags, linkExtra, nodeInc });
  const stampFile = path.join(out, 'flags.json');
  const sameFlags = fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8') === stamp;
  const mtime = (f) => (fs.existsSync(f) ? fs.statSync(f).mtimeMs : 0);
  const headers = [];
  for (const d of [path.join(root, 'include', 'mdp'), path.join(root, 'lib')]) {
    if (inTree && fs.existsSync(d)) {
      for (const f of fs.readdirSync(d)) if (f.endsWith('.h')) headers.push(path.join(d, f));
    }
  }
  const newestHeader = Math.max(0, ...headers.map(mtime));
  const todo = sources.map((s, i) => [s, objs[i]])
    .filter(([s, o]) => !sameFlags || mtime(o) < Math.max(mtime(s), newestHeader));

  const jobs = Math.max(1, os.cpus().length);
  let next = 0;
  async function worker() {
    while (next < todo.length) {
      const [s, o] = todo[next++];
      await run(cc, [...cflags, '-c', s, '-o', o]);
    }
  }
  await Promise.all(Array.from({ length: jobs }, worker));
  fs.writeFileSync(stampFile, stamp);

  // Export only Node's entry points: libmdp's own symbols stay inside the
  // addon, so they cannot clash with a libmdp.so some other addon loads.
  const verScript = path.join(out, 'exports.map');
  fs.writeFileSync(verScript, '{ global: napi_register_module_v1; ' +
    'node_api_module_get_api_version_v1; local: *; };\n');
  if (todo.length > 0 || mtime(target) < Math.max(...objs.map(mtime))) {
    await run(cc, ['-shared', '-o', target, '-Wl,--version-script=' + verScript,
      ...objs, ...linkExtra,
      ...zmqLibs.split(/\s+/).filter(Boolean), '-lm']);
  }
  console.log(`libmdp build: ${path.relative(process.cwd(), target) || target} ` +
    `(${inTree ? 'libmdp sources compiled in' : 'libmdp.a from pkg-config'}, Node headers ${nodeInc})`);
}

main().catch((e) => fail(e.message));
