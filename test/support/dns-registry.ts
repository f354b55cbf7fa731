// Register commands for DNS tests: an instance with one TTL check of a given status (or none, or a
// maintenance check), applied to an in-memory LocalRegistry.

import type { CheckSpec, CheckStatus, InstanceSpec, RegistryCommand } from '../../src/registry/model.ts';
import { checkSpec } from '../../src/registry/specs.ts';
import { MAINTENANCE_CHECK_PREFIX } from '../../src/registry/health.ts';
import type { LocalRegistry } from './local-registry.ts';

export interface InstanceOpts {
  ns?: string;
  node?: string;
  /** The node's own address (catalog register's Address). */
  nodeAddress?: string;
  address?: string;
  port?: number;
  tags?: string[];
  /** Aggregate to produce: a check with this status, 'maintenance', or 'none' (no checks = passing). */
  status?: CheckStatus | 'maintenance' | 'none';
  weights?: { Passing: number; Warning: number };
}

export function check(checkId: string, status: CheckStatus): CheckSpec {
  return checkSpec(checkId, { Status: status, TTL: '30s' });
}

export function registerCommand(service: string, id: string, o: InstanceOpts = {}): RegistryCommand {
  const instance: InstanceSpec = {
    Service: service,
    ID: id,
    Address: o.address ?? '10.0.0.1',
    Port: o.port ?? 8080,
    Tags: o.tags ?? [],
    Meta: {},
    Weights: o.weights ?? { Passing: 1, Warning: 1 },
    TaggedAddresses: {},
    EnableTagOverride: false,
  };
  const status = o.status ?? 'passing';
  const checks =
    status === 'none'
      ? []
      : status === 'maintenance'
        ? [check(`${MAINTENANCE_CHECK_PREFIX}${id}`, 'critical')]
        : [check(`${service}:${id}`, status)];
  const node = { node: o.node ?? 'node-1', ...(o.nodeAddress === undefined ? {} : { nodeAddress: o.nodeAddress }) };
  return { type: 'register', ns: o.ns ?? 'default', ...node, instance, checks, replaceExistingChecks: true, now: 1_000 };
}

export async function register(reg: LocalRegistry, service: string, id: string, o: InstanceOpts = {}): Promise<void> {
  const { result } = await reg.write(registerCommand(service, id, o));
  if (!result.ok) throw new Error(`register ${service}/${id}: ${result.error}`);
}
