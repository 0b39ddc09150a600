// Pure functions over a conversation's events: how the timeline folds
// streamed chunks, where the model was called, usage per turn. No DOM here.

/** The user request a chunk belongs to (extra.user_request_id). */
export const chunkOwner = (ev) => ev.extra?.user_request_id;

/** The attempt that wrote a chunk or a folded message (0: not a turn). */
export const attemptOf = (ev) => Number(ev.extra?.attempt ?? 0);

/**
 * fold arranges events for the timeline. Each assistant_delta belongs to
 * the stream of its user request; when that request's final message
 * (request_id "assistant:" + the user request id) is in the log, the
 * chunks fold under it, else they form an open stream shown where its
 * first chunk is. Returns items in seq order:
 *   {kind: 'event', ev, chunks, attempt}  chunks: [] unless it folds a stream
 *   {kind: 'stream', key, chunks}         a stream not (yet) finished
 * Every event of the input is in exactly one item.
 */
export function fold(events) {
  const finals = new Map();
  for (const ev of events) {
    const rid = ev.request_id ?? ev.extra?.request_id;
    if (ev.type === 'assistant_message' && typeof rid === 'string' && rid.startsWith('assistant:')) {
      finals.set(rid.slice('assistant:'.length), ev);
    }
  }
  const items = [];
  const byFinal = new Map(); // final event seq -> item
  const open = new Map(); // user request id -> open stream item
  const pending = new Map(); // user request id -> chunks seen before their final message
  for (const ev of events) {
    if (ev.type === 'assistant_delta') {
      const owner = chunkOwner(ev);
      const final = owner === undefined ? undefined : finals.get(owner);
      if (final) {
        const item = byFinal.get(final.seq);
        if (item) item.chunks.push(ev);
        else {
          if (!pending.has(owner)) pending.set(owner, []);
          pending.get(owner).push(ev);
        }
        continue;
      }
      const key = owner ?? 'seq:' + ev.seq;
      let item = open.get(key);
      if (!item) {
        item = { kind: 'stream', key, chunks: [] };
        open.set(key, item);
        items.push(item);
      }
      item.chunks.push(ev);
      continue;
    }
    const item = { kind: 'event', ev, chunks: [], attempt: attemptOf(ev) };
    const rid = ev.request_id ?? ev.extra?.request_id;
    if (ev.type === 'assistant_message' && typeof rid === 'string' && rid.startsWith('assistant:')) {
      const owner = rid.slice('assistant:'.length);
      if (finals.get(owner) === ev) {
        byFinal.set(ev.seq, item);
        item.chunks = pending.get(owner) ?? [];
        pending.delete(owner);
      }
    }
    items.push(item);
  }
  return items;
}

/**
 * replayChunks picks the chunks a folded message was built from: those of
 * its attempt, in index order. Chunks of other attempts lost the turn.
 */
export function replayChunks(item) {
  const want = item.kind === 'event' ? item.attempt : null;
  let chunks = item.chunks;
  if (want !== null) {
    const same = chunks.filter((c) => attemptOf(c) === want);
    if (same.length) chunks = same;
  } else if (chunks.length) {
    // An open stream: the newest attempt is the one still writing.
    const newest = Math.max(...chunks.map(attemptOf));
    chunks = chunks.filter((c) => attemptOf(c) === newest);
  }
  return [...chunks].sort((a, b) => index(a) - index(b) || a.seq - b.seq);
}

const index = (c) => Number(c.extra?.index ?? 0);

/** text is the plain text of an event's content (a string or parts). */
export function text(ev) {
  const c = ev.content;
  if (c === undefined || c === null) return '';
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) {
    return c.map((p) => (p && p.type === 'text' ? p.text : p && p.type ? '[' + p.type + ']' : '')).join('\n');
  }
  return JSON.stringify(c);
}

/**
 * callPoints are the seqs after which the model was called: each user
 * message and each tool result. The request "as of" one of them is what
 * the model was sent next.
 */
export function callPoints(events) {
  return events.filter((e) => e.type === 'user_message' || e.type === 'tool_result').map((e) => e.seq);
}

/**
 * previousCall is the last call point before seq: the request the model
 * was sent before the one as of seq, to compare with. null when none.
 */
export function previousCall(points, seq) {
  let prev = null;
  for (const p of points) {
    if (p >= seq) break;
    prev = p;
  }
  return prev;
}

const usageKeys = ['input', 'output', 'cache_read', 'cache_write', 'reasoning'];

/**
 * turns splits the conversation at each user message and sums the usage
 * of each part (what happened before the first user message is turn 0,
 * listed only when it has usage). Each turn: {n, seq, label, usage}.
 */
export function turns(events) {
  const out = [];
  let cur = { n: 0, seq: events[0]?.seq ?? 0, label: '', usage: zero() };
  for (const ev of events) {
    if (ev.type === 'user_message') {
      if (cur.n > 0 || hasUsage(cur.usage)) out.push(cur);
      cur = { n: cur.n + 1, seq: ev.seq, label: text(ev), usage: zero() };
    }
    if (ev.usage) add(cur.usage, ev.usage);
  }
  if (cur.n > 0 || hasUsage(cur.usage)) out.push(cur);
  return out;
}

function zero() {
  return { input: 0, output: 0, cache_read: 0, cache_write: 0, reasoning: 0, cost: 0 };
}

function add(sum, u) {
  for (const k of usageKeys) sum[k] += Number(u[k] ?? 0);
  sum.cost += Number(u.cost ?? 0);
}

function hasUsage(u) {
  return usageKeys.some((k) => u[k] > 0) || u.cost > 0;
}

/** visual class of an event type: the colour family the timeline uses. */
export function typeClass(type) {
  switch (type) {
    case 'user_message': return 't-user';
    case 'assistant_message': return 't-assistant';
    case 'assistant_delta': return 't-delta';
    case 'tool_result': return 't-tool';
    case 'system_update': case 'system_prompt_set': return 't-system';
    case 'turn_failed': case 'message_retracted': case 'conversation_cleared': return 't-alert';
    case 'usage_recorded': return 't-usage';
    case 'title_set': return 't-title';
    default:
      if (typeof type === 'string' && type.startsWith('x-')) return 't-custom';
      return 't-life';
  }
}

/** short badge text of an event type. */
export function typeLabel(type) {
  switch (type) {
    case 'user_message': return 'user';
    case 'assistant_message': return 'assistant';
    case 'assistant_delta': return 'chunk';
    case 'tool_result': return 'tool result';
    case 'system_update': return 'system';
    case 'system_prompt_set': return 'system prompt';
    case 'conversation_started': return 'started';
    case 'conversation_ended': return 'ended';
    case 'conversation_reopened': return 'reopened';
    case 'conversation_forked': return 'forked';
    case 'conversation_cleared': return 'cleared';
    case 'title_set': return 'title';
    case 'usage_recorded': return 'usage';
    case 'message_retracted': return 'retracted';
    case 'turn_failed': return 'turn failed';
    default: return type;
  }
}

/** fmtTokens writes a token count compactly: 950, 12.3k, 4.1M. */
export function fmtTokens(n) {
  if (!n) return '0';
  if (n < 1000) return String(n);
  if (n < 1e6) return (n / 1000).toFixed(n < 10000 ? 1 : 0) + 'k';
  return (n / 1e6).toFixed(1) + 'M';
}

/** fmtCost writes a cost in dollars with enough digits to see it. */
export function fmtCost(c) {
  if (!c) return '';
  if (c >= 1) return '$' + c.toFixed(2);
  // Two significant digits, trailing zeros cut: $0.00007, $0.013.
  const d = Math.min(12, 1 - Math.floor(Math.log10(c)));
  return '$' + c.toFixed(d).replace(/0+$/, '').replace(/\.$/, '');
}

/** clock writes an RFC 3339 time as HH:MM:SS.mmm in UTC, as the log has it. */
export function clock(t) {
  const m = /T(\d\d:\d\d:\d\d)(\.\d{1,3})?/.exec(t ?? '');
  if (!m) return '';
  return m[1] + (m[2] ?? '.000').padEnd(4, '0');
}

/** ms is an RFC 3339 time in milliseconds (nanoseconds cut). */
export function ms(t) {
  return Date.parse(t);
}

/** ago says how long ago a time was, roughly. */
export function ago(t, now = Date.now()) {
  const s = Math.max(0, (now - Date.parse(t)) / 1000);
  if (s < 60) return Math.floor(s) + 's ago';
  if (s < 3600) return Math.floor(s / 60) + 'm ago';
  if (s < 86400) return Math.floor(s / 3600) + 'h ago';
  if (s < 86400 * 60) return Math.floor(s / 86400) + 'd ago';
  return t.slice(0, 10);
}

/** dur writes a duration in milliseconds for people. */
export function dur(msec) {
  if (msec < 1000) return Math.round(msec) + ' ms';
  if (msec < 60000) return (msec / 1000).toFixed(msec < 10000 ? 2 : 1) + ' s';
  const s = Math.round(msec / 1000);
  if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
}
