/**
 * User input inside messages. An error message (and so a status trailer, a log line) may
 * quote what the client sent, but never more than ECHO_CHARS_MAX characters of it: input
 * is bounded only by the message size (4 MiB), and a status trailer larger than the
 * peer's HTTP/2 header limit never arrives (issue 10, defect 4: a 110 KB session id
 * echoed into SESSION_UNKNOWN wedged the call). Every message that quotes user input
 * goes through excerpt().
 */
import { ECHO_CHARS_MAX } from './limits';

/** The first ECHO_CHARS_MAX characters of `text`, plus "…" when it was longer. */
export function excerpt(text: string): string {
  if (text.length <= ECHO_CHARS_MAX) return text;
  // Do not split a surrogate pair: a lone surrogate is not valid UTF-8 on the wire.
  let end = ECHO_CHARS_MAX;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}

/** excerpt() of a JSON-quoted string (names: quotes and escapes make odd input visible). */
export function quoted(text: string): string {
  return JSON.stringify(excerpt(text));
}
