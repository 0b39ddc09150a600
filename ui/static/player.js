// Stream playback: a reply's chunks shown one by one, each after the gap
// the log recorded between it and the one before (its created_at),
// divided by the speed.

import { h } from './render.js';
import { text, ms, dur } from './model.js';

// A recorded gap longer than this (after the speed) is shortened to it, so
// a stream that stalled for minutes still plays back in a sitting.
const MAX_WAIT = 3000;

/** Player drives the playback panel; its root's data-state is idle,
 * playing, paused or done, and data-shown the number of chunks shown. */
export class Player {
  constructor(root) {
    this.root = root;
    this.textEl = root.querySelector('#playback-text');
    this.info = root.querySelector('#playback-info');
    this.ticks = root.querySelector('#playback-ticks');
    this.button = root.querySelector('#play');
    this.chunks = [];
    this.shown = 0;
    this.timer = null;
    this.speed = Number(root.querySelector('#speed').value) || 1;
    this.state = 'idle';
    this.meta = {};
    this.empty('Select an assistant reply that was streamed (it shows ▸ N chunks), then play it.');
  }

  /** empty shows a hint instead of a stream. */
  empty(hint) {
    this.stop();
    this.chunks = [];
    this.shown = 0;
    this.textEl.replaceChildren(h('span.dim', null, hint));
    this.info.textContent = '';
    this.ticks.replaceChildren();
    this.set('idle');
  }

  /** load sets the chunks to play (from the start) and what they became. */
  load(chunks, meta) {
    this.stop();
    this.chunks = chunks;
    this.meta = meta ?? {};
    this.shown = 0;
    this.textEl.replaceChildren();
    this.drawTicks();
    this.set('idle');
    this.describe();
  }

  /** update takes a longer list of the same stream's chunks (live). */
  update(chunks) {
    if (chunks.length <= this.chunks.length) return;
    this.chunks = chunks;
    this.drawTicks();
    this.describe();
    if (this.state === 'done') this.set('paused');
  }

  /** stop cancels the pending chunk. */
  stop() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  setSpeed(x) {
    this.speed = x > 0 ? x : 1;
    if (this.state === 'playing') { this.stop(); this.schedule(); }
  }

  play() {
    if (!this.chunks.length) return;
    if (this.shown >= this.chunks.length) this.reset();
    this.set('playing');
    this.schedule();
  }

  pause() {
    if (this.state !== 'playing') return;
    this.stop();
    this.set('paused');
  }

  toggle() {
    if (this.state === 'playing') this.pause();
    else this.play();
  }

  step() {
    if (!this.chunks.length) return;
    if (this.shown >= this.chunks.length) this.reset();
    this.stop();
    this.showNext();
    this.set(this.shown >= this.chunks.length ? 'done' : 'paused');
  }

  restart() {
    const playing = this.state === 'playing';
    this.stop();
    this.reset();
    if (playing) this.play();
    else this.set('idle');
  }

  reset() {
    this.shown = 0;
    this.textEl.replaceChildren();
    for (const t of this.ticks.children) t.classList.remove('on');
    this.describe();
  }

  /** gap is the recorded wait before chunk i, in milliseconds. */
  gap(i) {
    if (i === 0) return 0;
    return Math.max(0, ms(this.chunks[i].created_at) - ms(this.chunks[i - 1].created_at));
  }

  schedule() {
    if (this.shown >= this.chunks.length) { this.set('done'); return; }
    const wait = Math.min(MAX_WAIT, this.gap(this.shown) / this.speed);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.state !== 'playing') return;
      this.showNext();
      this.schedule();
    }, wait);
  }

  showNext() {
    const c = this.chunks[this.shown];
    for (const old of this.textEl.querySelectorAll('.fresh')) old.classList.remove('fresh');
    this.textEl.append(h('span.chunk.fresh', { dataset: { seq: c.seq } }, text(c)));
    this.ticks.children[this.shown]?.classList.add('on');
    this.shown++;
    this.describe();
  }

  set(state) {
    this.state = state;
    this.root.dataset.state = state;
    this.root.dataset.shown = String(this.shown);
    this.button.textContent = state === 'playing' ? '❚❚ Pause' : state === 'done' ? '▶ Replay' : '▶ Play';
  }

  drawTicks() {
    const n = this.chunks.length;
    const t0 = n ? ms(this.chunks[0].created_at) : 0;
    const span = n > 1 ? ms(this.chunks[n - 1].created_at) - t0 : 0;
    this.ticks.replaceChildren(...this.chunks.map((c, i) => {
      const t = h('span.tick' + (i < this.shown ? '.on' : ''), { title: 'chunk ' + i + ' · +' + dur(ms(c.created_at) - t0) });
      t.style.left = (span ? ((ms(c.created_at) - t0) / span) * 100 : (n > 1 ? (i / (n - 1)) * 100 : 0)) + '%';
      return t;
    }));
  }

  describe() {
    const n = this.chunks.length;
    this.root.dataset.shown = String(this.shown);
    if (!n) return;
    const t0 = ms(this.chunks[0].created_at);
    const span = ms(this.chunks[n - 1].created_at) - t0;
    const at = this.shown ? ms(this.chunks[this.shown - 1].created_at) - t0 : 0;
    const chars = this.chunks.reduce((s, c) => s + text(c).length, 0);
    const parts = [
      this.meta.label,
      `chunk ${this.shown}/${n}`,
      `+${dur(at)} of ${dur(span)}`,
      span > 0 ? `${Math.round(chars / (span / 1000))} chars/s` : null,
    ];
    if (this.meta.trigger) parts.push('first chunk ' + dur(t0 - ms(this.meta.trigger.created_at)) + ' after the user message');
    if (this.meta.final && this.shown === n) {
      const same = this.chunks.map(text).join('') === text(this.meta.final);
      parts.push(same ? 'matches the final message' : 'the final message differs (tool calls or a sweep)');
    }
    this.info.textContent = parts.filter(Boolean).join(' · ');
  }
}
