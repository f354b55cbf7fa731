// A CheckSpec with every field at its "not given" value, for code that builds checks itself
// (maintenance mode, tests) rather than parsing a registration.

import type { CheckSpec } from './model.ts';

/** A check named `checkId`, of type ttl with no TTL, status not given, overridden by `over`. */
export function checkSpec(checkId: string, over: Partial<CheckSpec> = {}): CheckSpec {
  return {
    CheckID: checkId,
    Name: checkId,
    Type: 'ttl',
    Status: '',
    Notes: '',
    Output: '',
    Interval: '',
    Timeout: '',
    TTL: '',
    DeregisterCriticalServiceAfter: '',
    SuccessBeforePassing: 0,
    FailuresBeforeCritical: 0,
    HTTP: '',
    Method: '',
    Header: {},
    TCP: '',
    GRPC: '',
    GRPCUseTLS: false,
    TLSSkipVerify: false,
    Args: [],
    ...over,
  };
}
