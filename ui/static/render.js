// DOM helpers: elements, highlighted JSON, line diffs. Text always goes in
// through textContent, so nothing a conversation holds is parsed as markup.

/** h makes an element: h('div.cls#id', {attr: v}, child, ...). */
export function h(spec, attrs, ...children) {
  const m = /^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i.exec(spec);
  const el = document.createElement((m && m[1]) || 'div');
  for (const part of (m && m[2] ? m[2].match(/[.#][\w-]+/g) : [])) {
    if (part[0] === '.') el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** svg makes an SVG element with attributes. */
export function svg(name, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', name);
  for (const [k, v] of Object.entries(attrs ?? {})) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

/** pretty is the indented JSON text the panels show and diff. */
export const pretty = (v) => JSON.stringify(v, null, 2);

/**
 * jsonInto fills pre with v as indented JSON, each token in a span of its
 * kind (key, string, number, bool, null), so the text equals pretty(v).
 */
export function jsonInto(pre, v) {
  pre.replaceChildren();
  const frag = document.createDocumentFragment();
  const re = /("(?:[^"\\]|\\.)*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(true|false)|(null)/g;
  const src = pretty(v) ?? 'undefined';
  let last = 0;
  for (const m of src.matchAll(re)) {
    if (m.index > last) frag.append(src.slice(last, m.index));
    let cls;
    if (m[1] !== undefined) cls = m[2] ? 'j-key' : 'j-str';
    else if (m[3] !== undefined) cls = 'j-num';
    else if (m[4] !== undefined) cls = 'j-bool';
    else cls = 'j-null';
    const span = document.createElement('span');
    span.className = cls;
    span.textContent = m[1] !== undefined ? m[1] : m[0];
    frag.append(span);
    if (m[2]) frag.append(m[2]);
    last = m.index + m[0].length;
  }
  frag.append(src.slice(last));
  pre.append(frag);
}

/**
 * diffLines compares two texts line by line (longest common subsequence)
 * and returns [{op: ' ' | '-' | '+', text}]. Texts over limit lines in
 * product are compared by their common head and tail only.
 */
export function diffLines(a, b, limit = 4e6) {
  const x = a.split('\n');
  const y = b.split('\n');
  let head = 0;
  while (head < x.length && head < y.length && x[head] === y[head]) head++;
  let tail = 0;
  while (tail < x.length - head && tail < y.length - head &&
    x[x.length - 1 - tail] === y[y.length - 1 - tail]) tail++;
  const xs = x.slice(head, x.length - tail);
  const ys = y.slice(head, y.length - tail);
  const out = x.slice(0, head).map((t) => ({ op: ' ', text: t }));
  if ((xs.length + 1) * (ys.length + 1) > limit) {
    for (const t of xs) out.push({ op: '-', text: t });
    for (const t of ys) out.push({ op: '+', text: t });
  } else {
    const n = xs.length, m = ys.length;
    const w = m + 1;
    const L = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        L[i * w + j] = xs[i] === ys[j] ? L[(i + 1) * w + j + 1] + 1 : Math.max(L[(i + 1) * w + j], L[i * w + j + 1]);
      }
    }
    let i = 0, j = 0;
    while (i < n && j < m) {
      if (xs[i] === ys[j]) { out.push({ op: ' ', text: xs[i] }); i++; j++; }
      else if (L[(i + 1) * w + j] >= L[i * w + j + 1]) out.push({ op: '-', text: xs[i++] });
      else out.push({ op: '+', text: ys[j++] });
    }
    while (i < n) out.push({ op: '-', text: xs[i++] });
    while (j < m) out.push({ op: '+', text: ys[j++] });
  }
  for (const t of x.slice(x.length - tail)) out.push({ op: ' ', text: t });
  return out;
}

/**
 * diffInto fills pre with a diff, unchanged runs longer than 2*context
 * lines cut to their ends with a marker saying how many were left out.
 */
export function diffInto(pre, diff, context = 3) {
  pre.replaceChildren();
  const changed = diff.map((d) => d.op !== ' ');
  const keep = diff.map((_, i) => {
    for (let k = Math.max(0, i - context); k <= Math.min(diff.length - 1, i + context); k++) if (changed[k]) return true;
    return false;
  });
  let skipped = 0;
  const flush = () => {
    if (skipped) pre.append(h('span.d-skip', null, `  … ${skipped} unchanged line${skipped === 1 ? '' : 's'}\n`));
    skipped = 0;
  };
  diff.forEach((d, i) => {
    if (!keep[i]) { skipped++; return; }
    flush();
    const cls = d.op === '+' ? 'd-add' : d.op === '-' ? 'd-del' : 'd-same';
    pre.append(h('span.' + cls, null, d.op + ' ' + d.text + '\n'));
  });
  flush();
  if (!changed.some(Boolean)) pre.replaceChildren(h('span.d-skip', null, 'No change: the model was sent the same request.'));
}
