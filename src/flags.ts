// Command-line flags as `sider server`, `sider agent` and the operator commands read them: Go-style
// `-name value`, no number guessing, no camel-case or dotted aliases; unknown flags are refused.

import parser from 'yargs-parser';

export interface FlagSpec {
  string?: string[];
  boolean?: string[];
  /** Flags that may repeat; a repeated flag not listed here parses as an array too. */
  array?: string[];
}

/** Parses `argv` with the one configuration every command uses. */
export function parseFlags(argv: string[], spec: FlagSpec): parser.Arguments {
  return parser(argv, {
    configuration: {
      'short-option-groups': false,
      'camel-case-expansion': false,
      'dot-notation': false,
      'parse-numbers': false,
      'parse-positional-numbers': false,
      'duplicate-arguments-array': true,
    },
    ...spec,
  });
}

/** The first parsed flag not in `known` (the parser's own `_` and `$0` always are), or undefined. */
export function unknownFlag(args: object, known: Iterable<string>): string | undefined {
  const names = new Set([...known, '_', '$0']);
  return Object.keys(args).find((k) => !names.has(k));
}
