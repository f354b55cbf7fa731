// `PUT /v1/agent/leave` (bin/server.ts leaveCluster): after handing off leadership, the server has
// the new leader remove it. A leader just elected refuses membership changes until it has committed
// an entry of its term (SIDER_CONF_CHANGE_PENDING, "retry"); the leave asks again until its deadline
// instead of failing. Seen in the integration suite: `sider leave` on the leader answered 409.

import t from 'tap';
import { leaveCluster } from '../../bin/server.ts';
import type { LeavingRaft, LeavingRegistry } from '../../bin/server.ts';
import { SiderError } from '../../raft/errors.ts';
import type { SiderErrorCode } from '../../raft/errors.ts';

interface Fake {
  raft: LeavingRaft;
  registry: LeavingRegistry;
  calls: () => number;
  logs: { level: string; msg: string }[];
  /** Takes this server out of the membership (as a removal that was made would). */
  remove: () => void;
}

/** This server `n1` as a follower of `n2`; `removeServer` answers with `answers` in turn (null: done), the last one repeated. */
function fake(answers: (SiderErrorCode | null)[]): Fake {
  let calls = 0;
  let voters = ['n1', 'n2', 'n3'];
  const logs: { level: string; msg: string }[] = [];
  const raft = {
    id: 'n1',
    status: () => ({ leader: 'n2', membership: { voters, learners: [] as string[] }, peers: {} }),
    transferLeadership: async () => {
      throw new Error('not the leader: no hand-off');
    },
  } as unknown as LeavingRaft;
  const registry: LeavingRegistry = {
    removeServer: async () => {
      const a = answers[Math.min(calls, answers.length - 1)]!;
      calls++;
      if (a !== null) throw new SiderError(a, `refused: ${a}`);
    },
  };
  return { raft, registry, calls: () => calls, logs, remove: () => (voters = voters.filter((v) => v !== 'n1')) };
}

const logTo = (f: Fake) => (level: string, msg: string) => void f.logs.push({ level, msg });

t.test('a removal refused for now is asked again until it is made', async (t) => {
  const f = fake(['SIDER_CONF_CHANGE_PENDING', 'SIDER_NOT_LEADER', 'SIDER_CONF_CHANGE_PENDING', null]);
  const r = await leaveCluster(f.raft, f.registry, logTo(f), 5_000);
  t.same(r, { id: 'n1', transferredTo: '' });
  t.equal(f.calls(), 4);
  t.equal(f.logs.filter((l) => l.level === 'debug' && /asking again/.test(l.msg)).length, 3);
  t.ok(f.logs.some((l) => l.msg === 'left the cluster'));
});

t.test('a refusal that will not pass fails the leave at once', async (t) => {
  const f = fake(['SIDER_CONF_CHANGE_INVALID', null]);
  await t.rejects(leaveCluster(f.raft, f.registry, logTo(f), 5_000), { code: 'SIDER_CONF_CHANGE_INVALID' });
  t.equal(f.calls(), 1);
  t.notOk(f.logs.some((l) => l.msg === 'left the cluster'));
});

t.test('refused until the deadline: the leave fails with the last refusal', async (t) => {
  const f = fake(['SIDER_CONF_CHANGE_PENDING']);
  const t0 = Date.now();
  await t.rejects(leaveCluster(f.raft, f.registry, logTo(f), 400), { code: 'SIDER_CONF_CHANGE_PENDING' });
  t.ok(f.calls() > 1, `asked ${f.calls()} times`);
  t.ok(Date.now() - t0 < 2_000, 'bounded by the deadline');
});

t.test('a refusal after the removal was made (no longer a member) is a leave done', async (t) => {
  const f = fake(['SIDER_NO_LEADER', null]);
  f.remove();
  const r = await leaveCluster(f.raft, f.registry, logTo(f), 5_000);
  t.same(r, { id: 'n1', transferredTo: '' });
  t.equal(f.calls(), 1, 'not asked again');
});
