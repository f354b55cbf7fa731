// The server's log destination (src/log.ts) in a real child process writing to a pipe: every line
// arrives whole and in order, also many in one turn and those logged just before process.exit(),
// and secret-named fields never reach the pipe.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const LOG_MODULE = fileURLToPath(new URL('../../src/log.ts', import.meta.url));

/** Runs `body` (with `log` in scope) in a child Node process; resolves with its stderr lines and exit code. */
function runChild(body: string): Promise<{ lines: string[]; code: number | null }> {
  const script = `import { createLogger } from ${JSON.stringify(LOG_MODULE)};\nconst log = createLogger({ level: 'info', format: 'json', node: 'c1' });\n${body}`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child did not exit within 20 s; stderr so far:\n${err.slice(-2000)}`));
    }, 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ lines: err.split('\n').filter((l) => l !== ''), code });
    });
  });
}

t.test('lines logged right before process.exit() are written', async (t) => {
  const r = await runChild(`for (let i = 0; i < 3; i++) log('info', 'line', { i });\nprocess.exit(3);`);
  t.equal(r.code, 3);
  t.same(r.lines.map((l) => (JSON.parse(l) as { i: number }).i), [0, 1, 2]);
});

t.test('many lines in one turn (~500 KB), then lines on later turns: all written, whole and in order', async (t) => {
  const r = await runChild(
    `for (let i = 0; i < 5000; i++) log('info', 'bulk', { i, pad: 'x'.repeat(40) });\n` +
      `setTimeout(() => { log('warn', 'later', { i: 5000 }); setTimeout(() => log('warn', 'last', { i: 5001 }), 5); }, 5);`,
  );
  t.equal(r.code, 0);
  const got = r.lines.map((l) => JSON.parse(l) as { i: number; msg: string; level: string });
  t.equal(got.length, 5002);
  t.ok(got.every((g, k) => g.i === k), 'in order, none lost or doubled');
  t.match(got.at(-1), { msg: 'last', level: 'warn', node: 'c1' });
});

t.test('a secret in the fields never reaches the pipe', async (t) => {
  const r = await runChild(`log('info', 'joined', { clusterKey: 'k-0123456789', peer: { token: 't-0123456789' } });`);
  t.equal(r.lines.length, 1);
  t.notMatch(r.lines[0], /0123456789/);
});
