// Health aggregation (worst wins, maintenance checks, no checks = passing) against a naive reference,
// and which aggregates are usable.

import t from 'tap';
import fc from 'fast-check';
import { aggregateHealth, healthRank, isMaintenanceCheck, isUsable, MAINTENANCE_CHECK_PREFIX } from '../../src/registry/health.ts';
import type { CheckStatus, Health } from '../../src/registry/model.ts';

const statuses: CheckStatus[] = ['passing', 'warning', 'critical'];

/** Naive reference: maintenance if any maintenance check, else the worst status by a fixed list. */
function naiveAggregate(checks: { CheckID: string; Status: CheckStatus }[]): Health {
  if (checks.some((c) => c.CheckID.startsWith('_service_maintenance:'))) return 'maintenance';
  if (checks.some((c) => c.Status === 'critical')) return 'critical';
  if (checks.some((c) => c.Status === 'warning')) return 'warning';
  return 'passing';
}

const checkArb = fc.record({
  CheckID: fc.oneof(
    fc.constantFrom('service:web', 'service:web:1', 'ttl', '_service_maintenance', 'x_service_maintenance:web'),
    fc.constantFrom('web', 'api', '').map((id) => `${MAINTENANCE_CHECK_PREFIX}${id}`),
    fc.string({ maxLength: 24 }),
  ),
  Status: fc.constantFrom(...statuses),
});

t.test('aggregate health matches the naive reference: worst wins, maintenance above all', async (t) => {
  fc.assert(
    fc.property(fc.array(checkArb, { maxLength: 12 }), (checks) => aggregateHealth(checks) === naiveAggregate(checks)),
    { numRuns: 5000 },
  );
  t.pass('property held');
});

t.test('an instance without checks is passing', async (t) => {
  t.equal(aggregateHealth([]), 'passing');
});

t.test('a maintenance check makes the instance maintenance whatever its status', async (t) => {
  for (const Status of statuses) {
    t.equal(aggregateHealth([{ CheckID: '_service_maintenance:web-1', Status }, { CheckID: 'c', Status: 'critical' }]), 'maintenance');
  }
  t.ok(isMaintenanceCheck('_service_maintenance:web-1'));
  t.notOk(isMaintenanceCheck('_service_maintenance'), 'the prefix includes the colon');
  t.notOk(isMaintenanceCheck('service:_service_maintenance:web'), 'only a prefix counts');
});

t.test('one critical check outweighs any number of passing and warning ones', async (t) => {
  t.equal(
    aggregateHealth([
      { CheckID: 'a', Status: 'passing' },
      { CheckID: 'b', Status: 'warning' },
      { CheckID: 'c', Status: 'critical' },
      { CheckID: 'd', Status: 'passing' },
    ]),
    'critical',
  );
  t.equal(aggregateHealth([{ CheckID: 'a', Status: 'passing' }, { CheckID: 'b', Status: 'warning' }]), 'warning');
});

t.test('healthRank orders passing < warning < critical < maintenance', async (t) => {
  const order: Health[] = ['passing', 'warning', 'critical', 'maintenance'];
  for (let i = 1; i < order.length; i++) t.ok(healthRank(order[i - 1]!) < healthRank(order[i]!), `${order[i - 1]} < ${order[i]}`);
});

t.test('usable is passing, plus warning only when allowed; never critical or maintenance', async (t) => {
  const table: [Health, boolean, boolean][] = [
    ['passing', false, true],
    ['passing', true, true],
    ['warning', false, false],
    ['warning', true, true],
    ['critical', false, false],
    ['critical', true, false],
    ['maintenance', false, false],
    ['maintenance', true, false],
  ];
  for (const [h, allow, want] of table) t.equal(isUsable(h, allow), want, `${h} allowWarning=${allow}`);
});
