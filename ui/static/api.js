// The public HTTP API, as INTERFACE.md fixes it, with the bearer token.
//
// The token lives in sessionStorage: it survives a reload but not the tab.
// Any request the server answers 401 asks for it once (one dialog for all
// requests waiting) and is sent again.

const TOKEN_KEY = 'chatlog.token';

/** An error answer of the API: status, the error code and its message. */
export class APIError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.name = 'APIError';
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

let asking = null; // the open token dialog's promise, shared by every 401

/** askToken shows the token dialog and resolves once a token is entered. */
export function askToken(refused) {
  if (asking) return asking;
  const dialog = document.getElementById('token-dialog');
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  document.getElementById('token-reason').textContent = refused
    ? 'The server refused that token. Enter the one chatlog serve was started with.'
    : 'This server was started with --token. Enter it to read the log; it is kept in this tab only.';
  asking = new Promise((resolve) => {
    const submit = (ev) => {
      ev.preventDefault();
      const tok = input.value.trim();
      if (!tok) return;
      sessionStorage.setItem(TOKEN_KEY, tok);
      input.value = '';
      form.removeEventListener('submit', submit);
      dialog.close();
      asking = null;
      resolve();
    };
    form.addEventListener('submit', submit);
    // Escape would leave every request waiting: keep the dialog open.
    dialog.addEventListener('cancel', (ev) => ev.preventDefault(), { once: true });
    dialog.showModal();
    input.focus();
  });
  return asking;
}

function authHeaders(extra) {
  const h = { ...extra };
  const tok = sessionStorage.getItem(TOKEN_KEY);
  if (tok) h.Authorization = 'Bearer ' + tok;
  return h;
}

/**
 * api sends one request and returns the decoded JSON answer; an error
 * answer throws an APIError. A 401 asks for the token and tries again.
 */
export async function api(path, { method = 'GET', body, signal } = {}) {
  for (;;) {
    const headers = authHeaders({ Accept: 'application/json' });
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, {
      method, headers, signal, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401) {
      await askToken(sessionStorage.getItem(TOKEN_KEY) !== null);
      continue;
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!res.ok) {
      const e = (data && data.error) || {};
      throw new APIError(res.status, e.code || 'http_' + res.status,
        e.message || text.trim() || res.statusText, data);
    }
    return data;
  }
}

/** qs builds a query string from the set members of params. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '' && v !== 0) q.set(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

export const conversationPath = (cid) => '/v1/conversations/' + encodeURIComponent(cid);

/**
 * allEvents reads every event of a conversation, a page at a time, until
 * an empty page (the contract's end), calling onPage with each page.
 */
export async function allEvents(cid, { signal, onPage } = {}) {
  let after = 0;
  const out = [];
  for (;;) {
    const page = await api(conversationPath(cid) + '/events' + qs({ after_seq: after, limit: 1000 }), { signal });
    if (!page.events.length) return out;
    out.push(...page.events);
    if (onPage) onPage(out.length);
    after = page.next_after_seq;
  }
}

/**
 * follow reads the conversation's server-sent events from after seq on,
 * calling onEvent with each event in seq order and onState with
 * "connecting", "live" or "reconnecting". EventSource cannot send the
 * bearer token, so the stream is read with fetch; a dropped connection is
 * resumed with Last-Event-ID, the last seq received, so nothing is missed
 * or repeated. It runs until signal aborts.
 */
export async function follow(cid, after, { signal, onEvent, onState }) {
  let last = after;
  let backoff = 250;
  while (!signal.aborted) {
    onState(last === after && backoff === 250 ? 'connecting' : 'reconnecting');
    try {
      const res = await fetch(conversationPath(cid) + '/events', {
        signal, cache: 'no-store',
        headers: authHeaders({ Accept: 'text/event-stream', 'Last-Event-ID': String(last) }),
      });
      if (res.status === 401) {
        await askToken(sessionStorage.getItem(TOKEN_KEY) !== null);
        continue;
      }
      if (!res.ok || !res.body) throw new Error('event stream answered ' + res.status);
      onState('live');
      backoff = 250;
      for await (const msg of sseMessages(res.body, signal)) {
        if (msg.data === undefined) continue;
        const ev = JSON.parse(msg.data);
        if (ev.seq <= last) continue; // never shown twice
        last = ev.seq;
        onEvent(ev);
      }
    } catch (err) {
      if (signal.aborted) return;
      console.debug('event stream dropped:', err);
    }
    if (signal.aborted) return;
    onState('reconnecting');
    await sleep(backoff, signal);
    backoff = Math.min(backoff * 2, 8000);
  }
}

/**
 * sseMessages parses a text/event-stream body: "id:" and "data:" fields
 * (several data lines join with newlines), comments (":") skipped, a blank
 * line ending each message.
 */
export async function* sseMessages(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const onAbort = () => reader.cancel().catch(() => {});
  signal?.addEventListener('abort', onAbort, { once: true });
  let buf = '';
  let msg = {};
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        if (buf[nl] === '\r' && nl === buf.length - 1) break; // maybe half of \r\n
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (msg.data !== undefined || msg.id !== undefined) yield msg;
          msg = {};
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') msg.data = msg.data === undefined ? value : msg.data + '\n' + value;
        else if (field === 'id') msg.id = value;
      }
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    reader.cancel().catch(() => {}); // a consumer that stopped early closes the connection
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}
