// An HTTP/1.1 response read off a raw socket: where its head and its Content-Length body end. The
// raw clients of the tests and benchmarks read their answers with it (text as latin1: one
// character per byte, so offsets are byte counts).

export interface ResponseFrame {
  /** Status line and headers, without the blank line. */
  head: string;
  /** The status code as sent ("200"). */
  status: string;
  /** Where the body starts. */
  bodyStart: number;
  /** Where the response ends (its body's last byte + 1); NaN when the head has no Content-Length. */
  end: number;
}

/** The response at the start of `text`; null while its head or its body has not all arrived. */
export function responseFrame(text: string): ResponseFrame | null {
  const headEnd = text.indexOf('\r\n\r\n');
  if (headEnd < 0) return null;
  const head = text.slice(0, headEnd);
  const length = /\r\ncontent-length: *(\d+)/i.exec(head);
  const bodyStart = headEnd + 4;
  const end = length ? bodyStart + Number(length[1]) : Number.NaN;
  if (text.length < end) return null;
  return { head, status: head.slice(9, 12), bodyStart, end };
}
