// Drives cairn's WebHDFS with the npm webhdfs package, as
// tests/webhdfs_test.go asks:
//   node run.js PROTOCOL HOST PORT TOKEN USER DIR write|delete
// "write" makes DIR, writes a.txt (a piped stream: a chunked body),
// lists, stats, reads, reads a range, appends and renames a.txt to b.txt,
// and prints what it saw as JSON; "delete" removes DIR. The package sends
// lower-case op names. With a TOKEN it authenticates by the delegation
// token (Authorization: Bearer); the server's certificate is not checked
// (cairn's daemons' certificates name no host).
'use strict';
const { Readable } = require('stream');
const WebHDFS = require('webhdfs');

const [protocol, host, port, token, user, dir, mode] = process.argv.slice(2);
const opts = { protocol, host, port, path: '/webhdfs/v1' };
if (user) opts.user = user;
const params = { rejectUnauthorized: false };
if (token) params.auth = { bearer: token };
const hdfs = WebHDFS.createClient(opts, params);

const call = (fn, ...args) => new Promise((resolve, reject) =>
  hdfs[fn](...args, (err, res) => (err ? reject(err) : resolve(res))));

function write(path, data, append) {
  return new Promise((resolve, reject) => {
    const w = hdfs.createWriteStream(path, append);
    w.on('error', reject);
    w.on('finish', resolve);
    Readable.from([data.subarray(0, 5), data.subarray(5)]).pipe(w);
  });
}

function read(path, o) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    const r = hdfs.createReadStream(path, o);
    r.on('error', reject);
    r.on('data', (c) => chunks.push(Buffer.from(c)));
    r.on('finish', () => resolve(Buffer.concat(chunks).toString()));
  });
}

async function main() {
  if (mode === 'delete') {
    await call('unlink', dir, true);
    const exists = await new Promise((resolve) => hdfs.exists(dir, resolve));
    console.log(JSON.stringify({ exists }));
    return;
  }
  await call('mkdir', dir);
  const first = Buffer.from('hello from npm webhdfs\n');
  await write(dir + '/a.txt', first, false);
  const names = (await call('readdir', dir)).map((s) => s.pathSuffix).sort();
  const st = await call('stat', dir + '/a.txt');
  const data = await read(dir + '/a.txt');
  const part = await read(dir + '/a.txt', { offset: 6, length: 4 });
  await write(dir + '/a.txt', Buffer.from('appended by npm\n'), true);
  await call('rename', dir + '/a.txt', dir + '/b.txt');
  const after = await read(dir + '/b.txt');
  const renamed = (await call('readdir', dir)).map((s) => s.pathSuffix).sort();
  console.log(JSON.stringify({ names, size: st.length, type: st.type, data, part, after, renamed }));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
