// The replay debugger: the conversation list, a conversation's timeline,
// the request as of any seq, stream playback, live updates and forks.
// Everything it shows comes from the public HTTP API (api.js).

import { api, qs, allEvents, follow, conversationPath, APIError } from './api.js';
import {
  fold, replayChunks, text, callPoints, previousCall, turns, typeClass, typeLabel,
  fmtTokens, fmtCost, clock, ms, ago, dur,
} from './model.js';
import { h, svg, jsonInto, pretty, diffLines, diffInto } from './render.js';
import { Player } from './player.js';

const $ = (id) => document.getElementById(id);
const PAGE = 50;

const S = {
  view: '',
  list: { q: '', user: '', source: '', cursor: '', loading: false, users: new Set(), sources: new Set() },
  conv: null, // the open conversation, see openConversation
};

// ---------------------------------------------------------------- routing

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  const params = new URLSearchParams(query);
  const m = /^\/c\/([^/]+)(?:\/(\d+))?$/.exec(path);
  if (m) return { view: 'conv', cid: decodeURIComponent(m[1]), seq: m[2] ? Number(m[2]) : null, params };
  return { view: 'list', params };
}

function convHash(cid, seq) {
  return '#/c/' + encodeURIComponent(cid) + (seq ? '/' + seq : '');
}

async function route() {
  const r = parseHash();
  if (r.view === 'list') {
    closeConversation();
    show('list');
    const p = r.params;
    const want = { q: p.get('q') ?? '', user: p.get('user') ?? '', source: p.get('source') ?? '' };
    const L = S.list;
    $('search').value = want.q;
    $('filter-user').value = want.user;
    $('filter-source').value = want.source;
    // Read afresh each time: activity moves conversations up the list.
    Object.assign(L, want);
    await loadList(true);
    crumbs([]);
    return;
  }
  show('conv');
  if (S.conv && S.conv.cid === r.cid) {
    if (r.seq && r.seq !== S.conv.selected) select(r.seq, { scroll: true });
    return;
  }
  await openConversation(r.cid, r.seq);
}

function show(view) {
  S.view = view;
  $('view-list').hidden = view !== 'list';
  $('view-conv').hidden = view !== 'conv';
  document.body.dataset.view = view;
}

function crumbs(parts) {
  const c = $('crumbs');
  c.replaceChildren();
  for (const p of parts) c.append(h('span.sep', null, '/'), p);
}

// ------------------------------------------------------------------ list

/**
 * loadList shows the search results or the first page of the list
 * (reset), or appends the next page. A newer load supersedes an older
 * one still waiting for its answer.
 */
async function loadList(reset) {
  const L = S.list;
  if (!reset && L.loading) return;
  const gen = L.gen = (L.gen ?? 0) + 1;
  L.loading = true;
  const list = $('conv-list');
  const hits = $('search-results');
  const empty = $('list-empty');
  try {
    if (L.q) {
      const res = await api('/v1/search' + qs({ q: L.q, user: L.user, source: L.source, limit: PAGE }));
      if (gen !== L.gen) return;
      list.hidden = true;
      $('more').hidden = true;
      hits.hidden = false;
      hits.replaceChildren(...res.results.map(hitRow));
      empty.hidden = res.results.length > 0;
      empty.textContent = 'No message holds every word of “' + L.q + '”.';
      return;
    }
    const page = await api('/v1/conversations' + qs({ user: L.user, source: L.source, limit: PAGE, cursor: reset ? '' : L.cursor }));
    if (gen !== L.gen) return;
    hits.hidden = true;
    list.hidden = false;
    if (reset) list.replaceChildren();
    for (const c of page.conversations) {
      list.append(convRow(c));
      if (c.user) L.users.add(c.user);
      if (c.source) L.sources.add(c.source);
    }
    L.cursor = page.next_cursor;
    $('more').hidden = !page.next_cursor;
    empty.hidden = list.children.length > 0;
    empty.textContent = L.user || L.source
      ? 'No conversation matches these filters.'
      : 'No conversations yet. Append events through the API, or run chatlog demo.';
    $('users').replaceChildren(...[...L.users].sort().map((u) => h('option', { value: u })));
    $('sources').replaceChildren(...[...L.sources].sort().map((s) => h('option', { value: s })));
  } catch (err) {
    if (gen === L.gen) fail('Listing conversations failed', err);
  } finally {
    if (gen === L.gen) L.loading = false;
  }
}

function convRow(c) {
  const u = c.usage ?? {};
  const title = c.title || c.preview || c.conversation_id;
  return h('li.conv', { dataset: { cid: c.conversation_id } },
    h('a.conv-link', { href: convHash(c.conversation_id) },
      h('div.c-title', null, title, c.ended ? h('span.chip.ended', null, 'ended') : null,
        c.parent_id ? h('span.chip.fork', { title: 'forked from ' + c.parent_id + ' at seq ' + c.parent_seq }, 'fork') : null),
      h('div.c-when', { title: c.last_active_at }, ago(c.last_active_at)),
      c.title && c.preview ? h('div.c-preview', null, c.preview) : null,
      h('div.c-meta', null,
        h('span.mono.c-id', null, c.conversation_id),
        c.source ? h('span.chip.src', null, c.source) : null,
        c.user ? h('span.who', null, '@' + c.user) : null,
        c.model ? h('span.model', null, c.model) : null,
        h('span', null, c.messages + ' msg' + (c.messages === 1 ? '' : 's')),
        c.tool_calls ? h('span.tools', null, c.tool_calls + ' tool call' + (c.tool_calls === 1 ? '' : 's')) : null,
        h('span.tok', { title: 'input / output tokens' }, fmtTokens(u.input) + ' in · ' + fmtTokens(u.output) + ' out'),
        u.cost ? h('span.cost', null, fmtCost(u.cost)) : null)));
}

function hitRow(hit) {
  const snippet = h('div.snippet');
  // The store marks matches [like this]; text may hold brackets of its
  // own (JSON), so only bracketed words of the query become marks.
  const words = S.list.q.toLowerCase().split(/\s+/).filter(Boolean);
  const isMatch = (w) => { const l = w.toLowerCase(); return words.some((q) => l.includes(q) || q.includes(l)); };
  let last = 0;
  for (const m of hit.snippet.matchAll(/\[([^\[\]\n]{1,80})\]/g)) {
    if (!isMatch(m[1])) continue;
    snippet.append(hit.snippet.slice(last, m.index), h('mark', null, m[1]));
    last = m.index + m[0].length;
  }
  snippet.append(hit.snippet.slice(last));
  return h('li.hit', { dataset: { cid: hit.conversation_id, seq: hit.seq } },
    h('a.conv-link', { href: convHash(hit.conversation_id, hit.seq) },
      h('div.c-meta', null, h('span.mono.c-id', null, hit.conversation_id), h('span.mono', null, 'seq ' + hit.seq),
        h('span.badge.' + typeClass(hit.role === 'tool' ? 'tool_result' : hit.role + '_message'), null, hit.role)),
      hit.before ? h('div.ctx', null, hit.before.role + ': ' + hit.before.text) : null,
      snippet,
      hit.after ? h('div.ctx', null, hit.after.role + ': ' + hit.after.text) : null));
}

function applyFilters(ev) {
  ev?.preventDefault();
  const q = new URLSearchParams();
  for (const [k, id] of [['q', 'search'], ['user', 'filter-user'], ['source', 'filter-source']]) {
    const v = $(id).value.trim();
    if (v) q.set(k, v);
  }
  const s = q.toString();
  const next = '#/' + (s ? '?' + s : '');
  if (location.hash === next) route();
  else location.hash = next;
}

// --------------------------------------------------------- conversation

function closeConversation() {
  const C = S.conv;
  if (!C) return;
  C.abort.abort();
  C.player.stop();
  clearTimeout(C.summaryTimer);
  S.conv = null;
  setLive('off');
}

async function openConversation(cid, seq) {
  closeConversation();
  const C = {
    cid, events: [], bySeq: new Map(), summary: null, items: [], itemOf: new Map(),
    selected: null, openFolds: new Set(), allOpen: false, tab: $('inspector').dataset.tab || 'event',
    abort: new AbortController(), player: new Player($('playback')), playing: null, reqToken: 0,
  };
  S.conv = C;
  crumbs([h('span.mono', null, cid)]);
  $('conv-head').replaceChildren(h('div.loading', null, 'Loading ' + cid + '…'));
  $('timeline').replaceChildren();
  $('usage-chart').replaceChildren();
  try {
    const [summary, evs] = await Promise.all([
      api(conversationPath(cid), { signal: C.abort.signal }).catch((err) => {
        if (err instanceof APIError && err.status === 404) return null;
        throw err;
      }),
      allEvents(cid, {
        signal: C.abort.signal,
        onPage: (n) => { $('timeline-count').textContent = n + ' events loaded…'; },
      }),
    ]);
    if (S.conv !== C) return;
    C.summary = summary;
    for (const ev of evs) addEvent(C, ev);
  } catch (err) {
    if (C.abort.signal.aborted) return;
    fail('Opening ' + cid + ' failed', err);
    $('conv-head').replaceChildren(h('div.error', null, 'Could not open ' + cid + ': ' + err.message));
    return;
  }
  renderConversation();
  const last = C.events.at(-1);
  select(seq ?? (last ? last.seq : null), { scroll: seq != null });
  startFollowing(C);
}

function addEvent(C, ev) {
  if (C.bySeq.has(ev.seq)) return false;
  C.bySeq.set(ev.seq, ev);
  if (!C.events.length || C.events.at(-1).seq < ev.seq) C.events.push(ev);
  else {
    C.events.push(ev);
    C.events.sort((a, b) => a.seq - b.seq);
  }
  return true;
}

function startFollowing(C) {
  const after = C.events.at(-1)?.seq ?? 0;
  let pending = false;
  follow(C.cid, after, {
    signal: C.abort.signal,
    onState: (st) => { if (S.conv === C) setLive(st); },
    onEvent: (ev) => {
      if (S.conv !== C || !addEvent(C, ev)) return;
      if (!pending) {
        pending = true;
        requestAnimationFrame(() => { pending = false; if (S.conv === C) liveUpdate(C); });
      }
    },
  });
}

function liveUpdate(C) {
  const atBottom = window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 40;
  renderTimeline();
  renderChart();
  if (C.playing) C.player.update(replayChunks(C.playing));
  if (atBottom) window.scrollTo({ top: document.documentElement.scrollHeight });
  clearTimeout(C.summaryTimer);
  C.summaryTimer = setTimeout(async () => {
    try {
      const sum = await api(conversationPath(C.cid), { signal: C.abort.signal });
      if (S.conv === C) { C.summary = sum; renderHead(); }
    } catch { /* the header keeps its last figures */ }
  }, 300);
}

function setLive(state) {
  const el = $('live');
  el.dataset.state = state;
  $('live-text').textContent = { off: 'offline', connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…' }[state];
}

function renderConversation() {
  renderHead();
  renderChart();
  renderTimeline();
}

function renderHead() {
  const C = S.conv;
  const s = C.summary;
  const head = $('conv-head');
  if (!s) {
    head.replaceChildren(h('h1', null, C.cid), h('div.facts', null, 'No events yet: this conversation is empty. New events appear here as they are appended.'));
    return;
  }
  const u = s.usage ?? {};
  const fact = (label, value, cls) => value ? h('span.fact' + (cls ? '.' + cls : ''), { dataset: { fact: label } }, h('span.k', null, label), ' ', h('span.v', null, value)) : null;
  head.replaceChildren(
    h('div.title-row', null,
      h('h1', null, s.title || s.preview || s.conversation_id),
      s.ended ? h('span.chip.ended', { title: s.ended_reason || '' }, 'ended') : null,
      s.parent_id ? h('a.chip.fork', { href: convHash(s.parent_id, s.parent_seq) }, 'forked from ' + s.parent_id + ' @ ' + s.parent_seq) : null),
    h('div.facts', null,
      h('span.mono.c-id', { title: 'conversation_id' }, s.conversation_id),
      s.source ? h('span.chip.src', null, s.source) : null,
      s.user ? h('span.who', null, '@' + s.user) : null,
      s.model ? h('span.model', null, s.model) : null,
      s.project ? fact('project', s.project) : null,
      fact('messages', String(s.messages)),
      fact('events', String(s.events)),
      s.tool_calls ? fact('tool calls', String(s.tool_calls), 'tools') : null,
      fact('tokens', fmtTokens(u.input) + ' in · ' + fmtTokens(u.output) + ' out' +
        (u.cache_read ? ' · ' + fmtTokens(u.cache_read) + ' cached' : '') +
        (u.reasoning ? ' · ' + fmtTokens(u.reasoning) + ' reasoning' : '')),
      u.cost ? fact('cost', fmtCost(u.cost), 'cost') : null,
      h('span.fact', { title: s.started_at + ' → ' + s.last_active_at }, h('span.k', null, 'active'), ' ', ago(s.last_active_at))));
}

// --------------------------------------------------------------- timeline

function renderTimeline() {
  const C = S.conv;
  const tl = $('timeline');
  C.items = fold(C.events);
  C.itemOf = new Map();
  const rows = [];
  let prevTime = null;
  for (const item of C.items) {
    if (item.kind === 'stream') {
      const key = 'u:' + item.key;
      C.itemOf.set('stream:' + item.key, item);
      for (const c of item.chunks) C.itemOf.set(c.seq, item);
      rows.push(streamRow(item, key));
      rows.push(foldBox(item, key));
      continue;
    }
    const ev = item.ev;
    C.itemOf.set(ev.seq, item);
    rows.push(eventRow(ev, prevTime, item));
    prevTime = ev.created_at;
    if (item.chunks.length) {
      const owner = (ev.request_id ?? ev.extra?.request_id).slice('assistant:'.length);
      for (const c of item.chunks) C.itemOf.set(c.seq, item);
      rows.push(foldBox(item, 'u:' + owner));
    }
  }
  tl.replaceChildren(...rows);
  tl.dataset.count = String(C.events.length);
  tl.dataset.lastSeq = String(C.events.at(-1)?.seq ?? 0);
  const folded = C.events.filter((e) => e.type === 'assistant_delta').length;
  // As the read model counts: events, with the streamed chunks apart.
  $('timeline-count').textContent = (C.events.length - folded) + ' events' + (folded ? ' + ' + folded + ' chunks' : '');
  $('expand-all').textContent = C.allOpen ? 'collapse streams' : 'expand streams';
  $('expand-all').hidden = folded === 0;
  markSelection();
}

function eventRow(ev, prevTime, item) {
  const gap = prevTime ? ms(ev.created_at) - ms(prevTime) : null;
  const rid = ev.request_id ?? ev.extra?.request_id;
  const u = ev.usage;
  const body = h('div.body');
  const t = text(ev);
  if (ev.type === 'title_set') body.append(h('div.content', null, '“' + (ev.extra?.title ?? '') + '”'));
  else if (ev.type === 'conversation_started') {
    const x = ev.extra ?? {};
    body.append(h('div.content.dim', null, ['source', 'user', 'model', 'project'].filter((k) => x[k]).map((k) => k + '=' + x[k]).join('  ')));
  } else if (ev.type === 'conversation_ended' && ev.extra?.reason) body.append(h('div.content.dim', null, 'reason: ' + ev.extra.reason));
  else if (ev.type === 'conversation_forked' && ev.extra?.parent_id) {
    body.append(h('div.content.dim', null, 'from ', h('a', { href: convHash(ev.extra.parent_id, ev.extra.parent_seq) },
      ev.extra.parent_id + ' @ ' + ev.extra.parent_seq)));
  }
  else if (t) body.append(h('div.content', null, t));
  if (ev.type === 'tool_result' && ev.tool_call_id) body.prepend(h('div.pair.mono', null, '← ' + ev.tool_call_id));
  for (const call of ev.tool_calls ?? []) {
    body.append(h('div.call', null,
      h('span.fn.mono', null, '→ ' + call.name), h('code.args', null, call.arguments ?? ''), h('span.cid.mono.dim', null, call.id)));
  }
  const meta = h('div.meta', null,
    rid ? h('span.rid.mono', { title: 'request_id' }, rid) : null,
    ev.model ? h('span.model', { title: ev.provider || '' }, ev.model) : null,
    ev.stop_reason ? h('span.stop' + (ev.stop_reason === 'interrupted' ? '.warn' : ''), { title: 'stop_reason' }, ev.stop_reason) : null,
    u ? h('span.tok', { title: usageTitle(u) }, fmtTokens(u.input) + '→' + fmtTokens(u.output)) : null,
    u?.cost ? h('span.cost', null, fmtCost(u.cost)) : null);
  const row = h('div.ev.' + typeClass(ev.type), {
    role: 'option', tabindex: '-1', id: 'ev-' + ev.seq,
    dataset: { seq: ev.seq, type: ev.type },
  },
  h('span.seq.mono', null, String(ev.seq)),
  h('span.badge', { title: ev.type }, typeLabel(ev.type)),
  h('span.time.mono', { title: ev.created_at }, clock(ev.created_at),
    gap !== null && gap >= 0 ? h('span.gap', null, ' +' + dur(gap)) : null),
  body, meta);
  if (ev.role && ev.role !== typeLabel(ev.type)) row.querySelector('.badge').dataset.role = ev.role;
  if (item.chunks.length) row.append(foldControls(item, 'u:' + rid.slice('assistant:'.length)));
  return row;
}

function streamRow(item, key) {
  const chunks = replayChunks(item);
  const first = item.chunks[0];
  const row = h('div.ev.stream.t-delta', {
    role: 'option', tabindex: '-1', id: 'stream-' + cssId(item.key),
    dataset: { stream: item.key, type: 'stream' },
  },
  h('span.seq.mono', null, String(first.seq)),
  h('span.badge', null, 'streaming'),
  h('span.time.mono', { title: first.created_at }, clock(first.created_at)),
  h('div.body', null, h('div.content', null, chunks.map(text).join(''), h('span.caret', { 'aria-hidden': 'true' }))),
  h('div.meta', null, h('span.rid.mono', { title: 'user_request_id' }, item.key)));
  row.append(foldControls(item, key));
  return row;
}

function foldControls(item, key) {
  const C = S.conv;
  const chunks = replayChunks(item);
  const span = chunks.length > 1 ? ms(chunks.at(-1).created_at) - ms(chunks[0].created_at) : 0;
  const open = C.allOpen || C.openFolds.has(key);
  const attempts = new Set(item.chunks.map((c) => c.extra?.attempt ?? 0));
  return h('div.fold-bar', null,
    h('button.fold-toggle.small', {
      type: 'button', 'aria-expanded': String(open), dataset: { key },
      onclick: (e) => { e.stopPropagation(); toggleFold(key); },
    }, (open ? '▾ ' : '▸ ') + item.chunks.length + ' chunk' + (item.chunks.length === 1 ? '' : 's') +
      (span ? ' over ' + dur(span) : '') + (attempts.size > 1 ? ' · ' + attempts.size + ' attempts' : '')),
    h('button.play-btn.small', {
      type: 'button', title: 'Play this stream back at its recorded pace (p)',
      onclick: (e) => { e.stopPropagation(); playItem(item, true); },
    }, '▶ play'));
}

// A closed fold's rows are built when it is first opened: in a long
// conversation most rows are chunks, and drawing them all up front is
// most of the time it takes to open it.
const unbuilt = new WeakMap(); // fold element -> its item, until built

function foldBox(item, key) {
  const C = S.conv;
  const box = h('div.fold', { dataset: { key }, role: 'group' });
  box.hidden = !(C.allOpen || C.openFolds.has(key));
  if (box.hidden) unbuilt.set(box, item);
  else buildFold(box, item);
  return box;
}

function buildFold(box, item) {
  unbuilt.delete(box);
  const used = new Set(replayChunks(item).map((c) => c.seq));
  let prev = null;
  for (const c of item.chunks) {
    const gap = prev ? ms(c.created_at) - ms(prev.created_at) : null;
    prev = c;
    const att = c.extra?.attempt;
    box.append(h('div.ev.t-delta' + (used.has(c.seq) ? '' : '.lost'), {
      role: 'option', tabindex: '-1', id: 'ev-' + c.seq, dataset: { seq: c.seq, type: c.type },
    },
    h('span.seq.mono', null, String(c.seq)),
    h('span.badge', null, 'chunk ' + (c.extra?.index ?? '?')),
    h('span.time.mono', { title: c.created_at }, clock(c.created_at), gap !== null ? h('span.gap', null, ' +' + dur(gap)) : null),
    h('div.body', null, h('div.content.chunk-text', null, text(c))),
    h('div.meta', null,
      att ? h('span.att' + (used.has(c.seq) ? '' : '.warn'), null, 'attempt ' + att + (used.has(c.seq) ? '' : ' (lost the turn)')) : null,
      h('span.rid.mono', { title: 'request_id' }, c.request_id ?? c.extra?.request_id ?? ''))));
  }
}

function toggleFold(key, force) {
  const C = S.conv;
  const open = force ?? !(C.allOpen || C.openFolds.has(key));
  if (open) C.openFolds.add(key);
  else {
    C.openFolds.delete(key);
    if (C.allOpen) {
      // Collapsing one while all are open: keep the others open.
      C.allOpen = false;
      for (const el of document.querySelectorAll('#timeline .fold')) if (el.dataset.key !== key) C.openFolds.add(el.dataset.key);
    }
  }
  for (const box of document.querySelectorAll('#timeline .fold')) {
    if (box.dataset.key !== key) continue;
    if (open && unbuilt.has(box)) buildFold(box, unbuilt.get(box));
    box.hidden = !open;
  }
  for (const b of document.querySelectorAll('#timeline .fold-toggle')) {
    if (b.dataset.key === key) {
      b.setAttribute('aria-expanded', String(open));
      b.textContent = (open ? '▾' : '▸') + b.textContent.slice(1);
    }
  }
}

function toggleAll() {
  const C = S.conv;
  C.allOpen = !C.allOpen;
  if (!C.allOpen) C.openFolds.clear();
  renderTimeline();
}

function usageTitle(u) {
  return Object.entries(u).filter(([, v]) => v).map(([k, v]) => k + ': ' + v).join('\n');
}

function cssId(s) {
  return String(s).replace(/[^\w-]/g, '_');
}

// ------------------------------------------------------------- selection

function rowFor(sel) {
  if (sel === null || sel === undefined) return null;
  if (typeof sel === 'string' && sel.startsWith('stream:')) return $('stream-' + cssId(sel.slice(7)));
  return $('ev-' + sel);
}

function markSelection() {
  const C = S.conv;
  const tl = $('timeline');
  for (const el of tl.querySelectorAll('.ev[aria-selected="true"]')) el.setAttribute('aria-selected', 'false');
  const row = rowFor(C.selected);
  if (row) row.setAttribute('aria-selected', 'true');
  const asOf = typeof C.selected === 'number' && C.tab === 'request' ? C.selected : null;
  tl.classList.toggle('asof', asOf !== null);
  if (asOf !== null) {
    for (const el of tl.querySelectorAll('.ev[data-seq]')) el.classList.toggle('future', Number(el.dataset.seq) > asOf);
  }
}

/** select makes sel (a seq, or "stream:" + key) the inspected event. */
function select(sel, { scroll = false, focus = false } = {}) {
  const C = S.conv;
  if (!C) return;
  if (typeof sel === 'number') {
    const item = C.itemOf.get(sel);
    // A chunk hidden in a closed fold: open it so the selection shows.
    if (item && C.bySeq.get(sel)?.type === 'assistant_delta') {
      const key = foldKey(item);
      if (!(C.allOpen || C.openFolds.has(key))) toggleFold(key, true);
    }
  }
  C.selected = sel;
  markSelection();
  const row = rowFor(sel);
  if (row) {
    if (focus) row.focus({ preventScroll: true });
    if (scroll || focus) row.scrollIntoView({ block: 'nearest' });
  }
  if (typeof sel === 'number') {
    const want = convHash(C.cid, sel);
    // The address follows the selection without a history entry per
    // key press: Back leaves the conversation.
    if (location.hash !== want) history.replaceState(null, '', want);
  }
  crumbs([h('a.mono', { href: convHash(C.cid) }, C.cid), typeof sel === 'number' ? h('span.mono', null, 'seq ' + sel) : null]);
  renderInspector();
}

function foldKey(item) {
  if (item.kind === 'stream') return 'u:' + item.key;
  const rid = item.ev.request_id ?? item.ev.extra?.request_id;
  return 'u:' + rid.slice('assistant:'.length);
}

function visibleRows() {
  return [...document.querySelectorAll('#timeline .ev')].filter((r) => !r.closest('.fold[hidden]'));
}

function selOf(row) {
  return row.dataset.stream !== undefined ? 'stream:' + row.dataset.stream : Number(row.dataset.seq);
}

function move(delta) {
  const rows = visibleRows();
  if (!rows.length) return;
  const cur = rows.indexOf(rowFor(S.conv.selected));
  let i = cur < 0 ? (delta > 0 ? 0 : rows.length - 1) : cur + delta;
  i = Math.max(0, Math.min(rows.length - 1, i));
  select(selOf(rows[i]), { focus: true });
}

// ------------------------------------------------------------- inspector

function setTab(tab) {
  const C = S.conv;
  if (C) C.tab = tab;
  $('inspector').dataset.tab = tab;
  for (const b of document.querySelectorAll('.tabs [role=tab]')) b.setAttribute('aria-selected', String(b.dataset.tab === tab));
  if (C) { markSelection(); renderInspector(); }
}

function openInspector(tab) {
  setTab(tab);
  $('inspector').dataset.open = 'true';
  const target = { event: 'event-json', request: 'request-json', playback: 'play' }[tab];
  $(target)?.focus({ preventScroll: true });
  if (matchMedia('(min-width: 900px)').matches) return;
  $('inspector').scrollTop = 0;
}

function closeInspector() {
  $('inspector').dataset.open = 'false';
  rowFor(S.conv?.selected)?.focus({ preventScroll: true });
}

function selectedEvent() {
  const C = S.conv;
  if (typeof C.selected === 'number') return C.bySeq.get(C.selected) ?? null;
  return null;
}

function renderInspector() {
  const C = S.conv;
  const ev = selectedEvent();
  const item = typeof C.selected === 'string' ? C.itemOf.get(C.selected) : C.itemOf.get(C.selected);
  $('insp-seq').textContent = ev ? 'seq ' + ev.seq + ' · ' + ev.type : C.selected ? 'open stream ' + C.selected.slice(7) : 'nothing selected';
  $('fork').disabled = !ev;
  $('tab-request').textContent = ev ? 'Request as of seq ' + ev.seq : 'Request as of seq';
  if (C.tab === 'event') {
    if (ev) jsonInto($('event-json'), ev);
    else if (item) jsonInto($('event-json'), item.chunks);
    else $('event-json').textContent = 'Select an event in the timeline (j / k, or click).';
  } else if (C.tab === 'request') {
    loadRequest();
  } else if (C.tab === 'playback') {
    if (item && item.chunks.length) {
      if (C.playing !== item) playItem(item, false);
    } else if (!C.playing) {
      C.player.empty('Select an assistant reply that was streamed (it shows ▸ N chunks), then play it.');
    }
  }
}

function requestURL(seq) {
  const f = $('request-format').value;
  return conversationPath(S.conv.cid) + '/messages' + qs({
    format: f, as_of_seq: seq,
    max_messages: $('request-max-messages').value, max_tokens: $('request-max-tokens').value,
    system: $('request-system').value,
  });
}

async function loadRequest() {
  const C = S.conv;
  const ev = selectedEvent();
  const panel = $('panel-request');
  const token = ++C.reqToken;
  panel.dataset.loadedSeq = '';
  if (!ev) {
    $('request-url').textContent = '';
    $('request-json').textContent = 'Select an event: this shows what the model was sent as of its seq.';
    $('request-diff').replaceChildren();
    return;
  }
  const url = requestURL(ev.seq);
  const prev = previousCall(callPoints(C.events), ev.seq);
  $('request-url').textContent = 'GET ' + url;
  try {
    const [cur, before] = await Promise.all([
      api(url, { signal: C.abort.signal }),
      prev ? api(requestURL(prev), { signal: C.abort.signal }) : null,
    ]);
    if (token !== C.reqToken || S.conv !== C) return;
    jsonInto($('request-json'), cur);
    if (before !== null) {
      $('diff-title').textContent = 'Change from the request as of seq ' + prev + ' (the previous model call)';
      diffInto($('request-diff'), diffLines(pretty(before), pretty(cur)));
    } else {
      $('diff-title').textContent = 'Change from the previous request';
      $('request-diff').replaceChildren(h('span.d-skip', null, 'No earlier model call: this is the first request.'));
    }
    panel.dataset.loadedSeq = String(ev.seq);
  } catch (err) {
    if (token !== C.reqToken || C.abort.signal.aborted) return;
    $('request-json').textContent = 'Failed: ' + err.message;
  }
}

function playItem(item, start) {
  const C = S.conv;
  C.playing = item;
  const chunks = replayChunks(item);
  let final = null;
  let trigger = null;
  if (item.kind === 'event') {
    final = item.ev;
    const owner = (final.request_id ?? final.extra?.request_id).slice('assistant:'.length);
    trigger = C.events.find((e) => e.type === 'user_message' && (e.request_id ?? e.extra?.request_id) === owner) ?? null;
  }
  C.player.load(chunks, { final, trigger, label: item.kind === 'event' ? 'seq ' + final.seq : 'open stream ' + item.key });
  if (start) {
    if (C.tab !== 'playback') openInspector('playback');
    C.player.play();
  }
}

async function fork() {
  const C = S.conv;
  const ev = selectedEvent();
  if (!ev) return;
  const btn = $('fork');
  btn.disabled = true;
  try {
    const res = await api(conversationPath(C.cid) + '/fork', { method: 'POST', body: { at_seq: ev.seq } });
    toast('Forked ' + C.cid + ' at seq ' + ev.seq + ' into ' + res.conversation_id, 'info');
    location.hash = convHash(res.conversation_id);
  } catch (err) {
    if (err instanceof APIError && err.status === 404 && err.code === 'not_found' && /no endpoint/.test(err.message)) {
      fail('This server has no fork endpoint', err);
    } else fail('Fork failed', err);
  } finally {
    btn.disabled = false;
  }
}

// ------------------------------------------------------------ usage chart

function renderChart() {
  const C = S.conv;
  const ts = turns(C.events);
  const wrap = $('chart-wrap');
  const chart = $('usage-chart');
  const any = ts.some((t) => t.usage.input || t.usage.output || t.usage.cost);
  wrap.hidden = !any;
  if (!any) return;
  const parts = [['input', 'u-in'], ['cache_read', 'u-cache'], ['cache_write', 'u-cachew'], ['output', 'u-out']];
  const total = (u) => parts.reduce((s, [k]) => s + u[k], 0);
  const max = Math.max(1, ...ts.map((t) => total(t.usage)));
  const maxCost = Math.max(0, ...ts.map((t) => t.usage.cost));
  const H = 84, top = 8, bottom = 15, bw = 28, gap = 12, left = 6;
  const W = Math.max(left + ts.length * (bw + gap), 160);
  chart.setAttribute('viewBox', `0 0 ${W} ${H}`);
  chart.setAttribute('width', String(W));
  chart.setAttribute('height', String(H));
  const g = [];
  const base = H - bottom;
  const scale = (base - top) / max;
  const costPts = [];
  ts.forEach((t, i) => {
    const x = left + i * (bw + gap);
    let y = base;
    const bar = svg('g', { class: 'bar', 'data-turn': t.n, 'data-seq': t.seq });
    for (const [k, cls] of parts) {
      const v = t.usage[k];
      if (!v) continue;
      const hgt = Math.max(1, v * scale);
      y -= hgt;
      bar.append(svg('rect', { x, y, width: bw, height: hgt, class: cls }));
    }
    bar.append(svg('rect', { x: x - gap / 2, y: 0, width: bw + gap, height: H, class: 'hit' }));
    const tip = `turn ${t.n} (seq ${t.seq})${t.label ? ': ' + t.label.slice(0, 60) : ''}\n` +
      parts.filter(([k]) => t.usage[k]).map(([k]) => `${k}: ${t.usage[k]}`).join('\n') +
      (t.usage.reasoning ? `\nreasoning: ${t.usage.reasoning}` : '') + (t.usage.cost ? `\ncost: ${fmtCost(t.usage.cost)}` : '');
    bar.append(svg('title', null, tip));
    bar.append(svg('text', { x: x + bw / 2, y: H - 3, class: 'turn-label' }, t.n ? String(t.n) : '0'));
    bar.addEventListener('click', () => select(t.seq, { scroll: true }));
    g.push(bar);
    if (maxCost > 0) costPts.push([x + bw / 2, base - (t.usage.cost / maxCost) * (base - top)]);
  });
  g.push(svg('line', { x1: 0, x2: W, y1: base + 0.5, y2: base + 0.5, class: 'axis' }));
  if (costPts.length) {
    g.push(svg('polyline', { points: costPts.map((p) => p.join(',')).join(' '), class: 'cost-line' }));
    for (const [x, y] of costPts) g.push(svg('circle', { cx: x, cy: y, r: 2.6, class: 'cost-dot' }));
  }
  chart.replaceChildren(...g);
  const sum = ts.reduce((s, t) => s + t.usage.cost, 0);
  $('chart-legend').replaceChildren(
    ...parts.filter(([k]) => ts.some((t) => t.usage[k])).map(([k, cls]) => h('span.key', null, h('span.sw.' + cls), k.replace('_', ' '))),
    sum ? h('span.key', null, h('span.sw.u-cost'), 'cost') : null,
    h('span.dim', null, 'max ' + fmtTokens(max) + ' tokens' + (sum ? ' · ' + fmtCost(maxCost) + ' per turn · total ' + fmtCost(sum) : '')));
}

// ---------------------------------------------------------------- errors

let toastTimer = null;

function toast(msg, kind = 'error') {
  const t = $('toast');
  t.textContent = msg;
  t.dataset.kind = kind;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
}

function fail(what, err) {
  if (err?.name === 'AbortError') return;
  const detail = err instanceof APIError ? `${err.status} ${err.code}: ${err.message}` : String(err?.message ?? err);
  toast(what + ': ' + detail);
  console.error(what, err);
}

// --------------------------------------------------------------- keyboard

function isTyping(el) {
  return el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' || el.isContentEditable);
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (document.querySelector('dialog[open]')) return;
  if (isTyping(e.target)) {
    if (e.key === 'Escape') e.target.blur();
    return;
  }
  const key = e.key;
  if (key === '?') { $('help-dialog').showModal(); e.preventDefault(); return; }
  if (key === '/') {
    e.preventDefault();
    if (S.view !== 'list') location.hash = '#/';
    setTimeout(() => $('search').focus(), 0);
    return;
  }
  if (S.view === 'list') {
    const links = [...document.querySelectorAll(S.list.q ? '#search-results .conv-link' : '#conv-list .conv-link')];
    const cur = links.indexOf(document.activeElement);
    if (key === 'j' || key === 'ArrowDown') { e.preventDefault(); links[Math.min(links.length - 1, cur + 1)]?.focus(); }
    else if (key === 'k' || key === 'ArrowUp') { e.preventDefault(); links[Math.max(0, cur - 1)]?.focus(); }
    return;
  }
  const C = S.conv;
  if (!C) return;
  const item = C.itemOf.get(C.selected);
  switch (key) {
    case 'j': case 'ArrowDown': move(1); break;
    case 'k': case 'ArrowUp': move(-1); break;
    case 'g': case 'Home': { const r = visibleRows()[0]; if (r) select(selOf(r), { focus: true }); break; }
    case 'G': case 'End': { const r = visibleRows().at(-1); if (r) select(selOf(r), { focus: true }); break; }
    case 'Enter':
      if (e.target.closest?.('button, a')) return; // let buttons and links act
      openInspector('event');
      break;
    case 'r': openInspector('request'); break;
    case 'p':
      if (item?.chunks.length) {
        if (C.playing === item && C.player.state !== 'done' && C.player.state !== 'idle') C.player.toggle();
        else playItem(item, true);
      }
      break;
    case 'n': if (C.playing) C.player.step(); break;
    case 'ArrowRight': case 'l': if (item?.chunks.length) toggleFold(foldKey(item), true); break;
    case 'ArrowLeft': case 'h':
      if (item?.chunks.length) {
        const ev = selectedEvent();
        toggleFold(foldKey(item), false);
        if (ev?.type === 'assistant_delta') select(item.kind === 'event' ? item.ev.seq : 'stream:' + item.key, { focus: true });
      }
      break;
    case 'x': toggleAll(); break;
    case 'Escape':
      if ($('inspector').dataset.open === 'true' && !matchMedia('(min-width: 900px)').matches) closeInspector();
      else location.hash = '#/';
      break;
    default: return;
  }
  e.preventDefault();
}

// ------------------------------------------------------------------ setup

function init() {
  $('filters').addEventListener('submit', applyFilters);
  $('search').addEventListener('search', applyFilters); // the clear button of type=search
  $('more').addEventListener('click', () => loadList(false));
  $('timeline').addEventListener('click', (e) => {
    const row = e.target.closest('.ev');
    if (!row || e.target.closest('button')) return;
    select(selOf(row), { focus: true });
    if (!matchMedia('(min-width: 900px)').matches) openInspector(S.conv.tab === 'request' ? 'request' : 'event');
  });
  $('expand-all').addEventListener('click', toggleAll);
  for (const b of document.querySelectorAll('.tabs [role=tab]')) b.addEventListener('click', () => openInspector(b.dataset.tab));
  $('inspector-close').addEventListener('click', closeInspector);
  $('req-opts').addEventListener('submit', (e) => { e.preventDefault(); loadRequest(); });
  $('req-opts').addEventListener('change', () => loadRequest());
  $('fork').addEventListener('click', fork);
  $('help-button').addEventListener('click', () => $('help-dialog').showModal());
  $('help-close').addEventListener('click', () => $('help-dialog').close());
  const P = () => S.conv?.player;
  $('play').addEventListener('click', () => {
    const C = S.conv;
    if (!C) return;
    if (!C.playing) { const item = C.itemOf.get(C.selected); if (item?.chunks.length) playItem(item, true); return; }
    P().toggle();
  });
  $('step').addEventListener('click', () => P()?.step());
  $('restart').addEventListener('click', () => P()?.restart());
  $('speed').addEventListener('change', () => P()?.setSpeed(Number($('speed').value)));
  document.addEventListener('keydown', onKey);
  window.addEventListener('hashchange', route);
  setTab('event');
  route();
}

init();
