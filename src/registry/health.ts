// Aggregated health of an instance (DESIGN §2): worst of its checks wins, maintenance > critical >
// warning > passing, and which aggregates are "usable" (served by DNS and `?passing` reads).

import type { CheckStatus, Health } from './model.ts';

/**
 * Consul represents service maintenance mode as a check with this ID prefix (followed by the
 * service ID); its presence alone puts the instance in maintenance, whatever its Status.
 */
export const MAINTENANCE_CHECK_PREFIX = '_service_maintenance:';

export function isMaintenanceCheck(checkId: string): boolean {
  return checkId.startsWith(MAINTENANCE_CHECK_PREFIX);
}

const rank: Record<Health, number> = { passing: 0, warning: 1, critical: 2, maintenance: 3 };

/** Orders aggregates from best (0, passing) to worst (3, maintenance). */
export function healthRank(h: Health): number {
  return rank[h];
}

/** Worst wins; no checks = passing. Pure; called once per instance change, not per read. */
export function aggregateHealth(checks: readonly { CheckID: string; Status: CheckStatus }[]): Health {
  let worst: Health = 'passing';
  for (const c of checks) {
    // Nothing is worse than maintenance: stop scanning.
    if (isMaintenanceCheck(c.CheckID)) return 'maintenance';
    if (rank[c.Status] > rank[worst]) worst = c.Status;
  }
  return worst;
}

/**
 * Whether an instance with this aggregate may be served: passing always, warning only when the
 * caller allows it (DNS by default; HTTP `?passing` never), critical and maintenance never.
 */
export function isUsable(health: Health, allowWarning: boolean): boolean {
  return health === 'passing' || (allowWarning && health === 'warning');
}
