// Edge-triggered watchers: fire once when the index passes, cancel in O(1), immediate fire via a
// microtask, scale to 50,000 waiters on one key, and wake from the registry's apply and restore.

import t from 'tap';
import { encodeCommand } from '../../src/registry/command-codec.ts';
import type { RegistryCommand } from '../../src/registry/model.ts';
import { RegistryStateMachine } from '../../src/registry/state-machine.ts';
import { catalogKey, namespaceKey, serviceKey, Watchers } from '../../src/registry/watchers.ts';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function register(service: string, id: string, tags: string[] = []): RegistryCommand {
  return {
    type: 'register',
    ns: 'default',
    node: 'n1',
    instance: {
      Service: service,
      ID: id,
      Address: '10.0.0.1',
      Port: 80,
      Tags: tags,
      Meta: {},
      Weights: { Passing: 1, Warning: 1 },
      TaggedAddresses: {},
      EnableTagOverride: false,
    },
    checks: [],
    replaceExistingChecks: false,
    now: 0,
  };
}

function applier(sm: RegistryStateMachine): (cmd: RegistryCommand) => void {
  let index = 0;
  return (cmd) => {
    sm.apply({ index: ++index, term: 1, type: 'normal', data: encodeCommand(cmd), rid: '' });
  };
}

t.test('a waiter fires once when its key index passes its index, and is then gone', async (t) => {
  const w = new Watchers();
  let fired = 0;
  w.watch('k', 5, 5, () => fired++);
  t.equal(w.size, 1);
  t.equal(w.notify('k', 6), 1);
  t.equal(fired, 1, 'fired synchronously inside notify');
  t.equal(w.size, 0);
  t.equal(w.notify('k', 7), 0);
  t.equal(fired, 1, 'fires at most once');
});

t.test('a waiter ahead of the new index keeps waiting', async (t) => {
  const w = new Watchers();
  let fired = 0;
  w.watch('k', 5, 10, () => fired++);
  t.equal(w.notify('k', 8), 0);
  t.equal(fired, 0);
  t.equal(w.count('k'), 1);
  t.equal(w.notify('k', 11), 1);
  t.equal(fired, 1);
});

t.test('notifying one key leaves waiters on other keys alone', async (t) => {
  const w = new Watchers();
  const fired: string[] = [];
  for (const k of [serviceKey('default', 'api'), catalogKey('default'), namespaceKey('default'), serviceKey('other', 'api')]) {
    w.watch(k, 1, 1, () => fired.push(k));
  }
  w.notify(serviceKey('default', 'api'), 2);
  t.same(fired, [serviceKey('default', 'api')]);
  t.equal(w.size, 3);
});

t.test('watch keys cannot collide across namespace and service names', async (t) => {
  t.not(serviceKey('a/b', 'c'), serviceKey('a', 'b/c'));
  t.not(catalogKey('a'), namespaceKey('a'));
});

t.test('cancel removes the waiter so it never fires', async (t) => {
  const w = new Watchers();
  let fired = 0;
  const cancel = w.watch('k', 1, 1, () => fired++);
  cancel();
  t.equal(w.size, 0);
  t.equal(w.count('k'), 0);
  w.notify('k', 2);
  t.equal(fired, 0);
  cancel();
  t.equal(w.size, 0, 'cancelling twice is harmless');
});

t.test('a waiter already behind the index fires from a microtask, not synchronously', async (t) => {
  const w = new Watchers();
  let fired = 0;
  w.watch('k', 7, 3, () => fired++);
  t.equal(fired, 0, 'not synchronously');
  t.equal(w.size, 0, 'holds no entry');
  await turn();
  t.equal(fired, 1);
});

t.test('cancelling a due waiter before its microtask runs prevents the fire', async (t) => {
  const w = new Watchers();
  let fired = 0;
  const cancel = w.watch('k', 7, 3, () => fired++);
  cancel();
  await turn();
  t.equal(fired, 0);
});

t.test('callbacks may cancel other waiters and re-watch the same key while firing', async (t) => {
  const w = new Watchers();
  const fired: string[] = [];
  let cancelC = (): void => {};
  w.watch('k', 1, 1, () => {
    fired.push('a');
    cancelC();
    // Re-watch at the new index: lands in a fresh set, not fired by this pass.
    w.watch('k', 2, 2, () => fired.push('a2'));
  });
  w.watch('k', 1, 1, () => fired.push('b'));
  cancelC = w.watch('k', 1, 1, () => fired.push('c'));
  w.watch('k', 1, 5, () => fired.push('later'));
  t.equal(w.notify('k', 2), 2);
  t.same(fired, ['a', 'b']);
  t.equal(w.count('k'), 2, 'the re-watch and the waiter ahead remain');
  w.notify('k', 6);
  t.same(fired, ['a', 'b', 'a2', 'later']);
  t.equal(w.size, 0);
});

t.test('a throwing callback is reported and the others still fire', async (t) => {
  const errors: unknown[] = [];
  const w = new Watchers({ onError: (e) => errors.push(e) });
  let fired = 0;
  w.watch('k', 1, 1, () => {
    throw new Error('boom');
  });
  w.watch('k', 1, 1, () => fired++);
  w.notify('k', 2);
  t.equal(fired, 1);
  t.equal(errors.length, 1);
});

t.test('50,000 waiters on one key fire in one pass and cancel individually', async (t) => {
  const w = new Watchers();
  const n = 50_000;
  let fired = 0;
  const cancels: (() => void)[] = [];
  for (let i = 0; i < n; i++) cancels.push(w.watch('hot', 10, 10, () => fired++));
  t.equal(w.count('hot'), n);
  // Cancel every tenth: each cancel is a Set delete.
  for (let i = 0; i < n; i += 10) cancels[i]!();
  t.equal(w.count('hot'), n - n / 10);
  t.equal(w.notify('hot', 11), n - n / 10);
  t.equal(fired, n - n / 10);
  t.equal(w.size, 0);
});

t.test('fireAll wakes every waiter on every key', async (t) => {
  const w = new Watchers();
  let fired = 0;
  w.watch('a', 1, 1, () => fired++);
  w.watch('b', 1, 100, () => fired++);
  t.equal(w.fireAll(), 2);
  t.equal(fired, 2);
  t.equal(w.size, 0);
});

t.test('a service watcher fires at the end of the apply that changes the service', async (t) => {
  const sm = new RegistryStateMachine();
  const apply = applier(sm);
  apply(register('api', 'a'));
  const fired: string[] = [];
  sm.watchService('default', 'api', sm.serviceIndex('default', 'api'), () => fired.push('api'));
  sm.watchService('default', 'web', sm.serviceIndex('default', 'web'), () => fired.push('web'));
  sm.watchCatalog('default', sm.catalogIndex('default'), () => fired.push('catalog'));
  sm.watchNamespace('default', sm.namespaceIndex('default'), () => fired.push('ns'));
  t.equal(sm.watcherCount, 4);
  apply(register('api', 'a', ['v2']));
  t.same(fired.sort(), ['api', 'catalog', 'ns'], 'fired synchronously, web untouched');
  apply(register('api', 'a', ['v3']));
  t.equal(fired.length, 3, 'each waiter fired once');
  t.equal(sm.watcherCount, 1);
});

t.test('an identical re-registration wakes no watcher', async (t) => {
  const sm = new RegistryStateMachine();
  const apply = applier(sm);
  apply(register('api', 'a'));
  let fired = 0;
  sm.watchService('default', 'api', sm.serviceIndex('default', 'api'), () => fired++);
  sm.watchNamespace('default', sm.namespaceIndex('default'), () => fired++);
  sm.watchCatalog('default', sm.catalogIndex('default'), () => fired++);
  apply(register('api', 'a'));
  await turn();
  t.equal(fired, 0);
  t.equal(sm.watcherCount, 3);
});

t.test('watching a service with an old index answers at once through a microtask', async (t) => {
  const sm = new RegistryStateMachine();
  const apply = applier(sm);
  apply(register('api', 'a'));
  let fired = 0;
  sm.watchService('default', 'api', 0, () => fired++);
  t.equal(fired, 0);
  await turn();
  t.equal(fired, 1);
});

t.test('a watcher on a never-seen service wakes when it is first registered', async (t) => {
  const sm = new RegistryStateMachine();
  const apply = applier(sm);
  apply(register('api', 'a'));
  let fired = 0;
  sm.watchService('default', 'web', sm.serviceIndex('default', 'web'), () => fired++);
  apply(register('web', 'w'));
  t.equal(fired, 1);
});

t.test('50,000 held queries on one service are woken by one apply', async (t) => {
  const sm = new RegistryStateMachine();
  const apply = applier(sm);
  apply(register('api', 'a'));
  const at = sm.serviceIndex('default', 'api');
  let fired = 0;
  for (let i = 0; i < 50_000; i++) sm.watchService('default', 'api', at, () => fired++);
  t.equal(sm.watcherCount, 50_000);
  apply(register('api', 'b'));
  t.equal(fired, 50_000);
  t.equal(sm.watcherCount, 0);
});

t.test('restore wakes every watcher', async (t) => {
  const sm = new RegistryStateMachine();
  const apply = applier(sm);
  apply(register('api', 'a'));
  const snap = await sm.snapshot()();
  let fired = 0;
  sm.watchService('default', 'api', 1000, () => fired++);
  sm.watchCatalog('other', 1000, () => fired++);
  sm.restore(snap, { index: 1, term: 1, membership: { voters: [], learners: [], addrs: {}, removed: [] } });
  t.equal(fired, 2);
  t.equal(sm.watcherCount, 0);
});
