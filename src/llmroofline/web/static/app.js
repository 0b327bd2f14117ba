// llmroofline page: controls <-> URL query string, calls to /api/*, rendering.
// Plain JS, no build step; charts use plotly.js served by the app (/static/plotly.min.js).
"use strict";

const DEFAULTS = {
  model: "meta-llama/Llama-2-7b-hf", hardware: "a100-sxm-80gb", vs: "h20", tp: "1",
  quant: "", batch: "1", input_len: "128", output_len: "128", flash: "1", graphs: "0", chunk: "", profile: "default",
  phase: "decode", sort: "", mesh_batch: "1:1024:24", mesh_seq: "128:32768:24", mesh_output: "128",
  cfg: "",
};
const BOUND_COLORS = { compute: "#d62728", memory: "#1f9bd1", overhead: "#e0b000", communication: "#c030c0" };
const DEVICE_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
const MASK_COLORS = ["#dcdcdc", "#c9b3dc", "#f2dc8c"];   // fits neither / only device 0 / only device 1
const $ = (id) => document.getElementById(id);

let state = { ...DEFAULTS };
let config = null;          // uploaded config.json object (state.cfg is its URL form)
let models = [], devices = [], aliasToId = new Map();
let lastAnalysis = null;
let sortKey = "", sortDir = 1;
let rev = 0, pending = 0, timer = null;

// -- number formatting: the CLI's (cli.secs, cli.si, cli.gb) -----------------------------
function secs(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "-";
  if (x >= 1) return x.toFixed(3) + " s";
  if (x >= 1e-3) return (x * 1e3).toFixed(3) + " ms";
  return (x * 1e6).toFixed(1) + " us";
}
function g3(v) { return String(Number(v.toPrecision(3))); }
function si(x, unit = "") {
  if (x === null || x === undefined || Number.isNaN(x)) return "-";
  for (const [p, s] of [[1e15, "P"], [1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (Math.abs(x) >= p) return g3(x / p) + s + unit;
  }
  return g3(x) + unit;
}
function fixed(x, d) {
  return x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
}
function gb(x) { return fixed(x / 1e9, 2) + " GB"; }
function short(x) {
  if (x >= 1024 && x % 1024 === 0) return (x / 1024) + "k";
  if (x >= 1e6) return g3(x / 1e6) + "M";
  if (x >= 1e4) return g3(x / 1e3) + "k";
  return String(x);
}
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// -- URL state ------------------------------------------------------------------------------
function readUrl() {
  const q = new URLSearchParams(location.search);
  for (const k of Object.keys(DEFAULTS)) if (q.has(k)) state[k] = q.get(k);
}
function writeUrl() {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) if (v !== DEFAULTS[k] && v !== "") q.set(k, v);
  if (state.vs === "" && DEFAULTS.vs !== "") q.set("vs", "none");
  const s = q.toString();
  history.replaceState(null, "", s ? "?" + s : location.pathname);
}
function b64url(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function unb64url(s) {
  const t = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(t, (c) => c.charCodeAt(0));
}
async function packConfig(obj) {   // config.json -> deflate -> base64url (fits in a link)
  const raw = new TextEncoder().encode(JSON.stringify(obj));
  if (typeof CompressionStream === "undefined") return "j" + b64url(raw);
  const out = await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate-raw"))).arrayBuffer();
  return "z" + b64url(new Uint8Array(out));
}
async function unpackConfig(s) {
  const bytes = unb64url(s.slice(1));
  let text;
  if (s[0] === "z") {
    text = await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate-raw"))).text();
  } else {
    text = new TextDecoder().decode(bytes);
  }
  return JSON.parse(text);
}

// -- controls ---------------------------------------------------------------------------------
function fillControls() {
  $("model").value = config ? "" : state.model;
  $("model").placeholder = config ? "uploaded config.json (" + (config._name_or_path || "custom") + ")" : "search: llama, qwen, 70b, moe …";
  $("hardware").value = state.hardware;
  $("vs").value = state.vs === "none" ? "" : state.vs;
  $("tp").value = state.tp;
  const parts = state.quant.split(",").map((p) => p.trim().toLowerCase()).filter(Boolean);
  $("quant").value = parts.find((p) => !p.startsWith("kv-")) || "fp16";
  $("kv").value = parts.find((p) => p.startsWith("kv-")) || "";
  for (const k of ["batch", "input_len", "output_len", "chunk", "mesh_batch", "mesh_seq", "mesh_output"]) $(k).value = state[k];
  $("flash").checked = state.flash !== "0";
  $("graphs").checked = state.graphs === "1";
  $("profile").value = state.profile;
  for (const b of document.querySelectorAll("[data-phase]")) b.classList.toggle("on", b.dataset.phase === state.phase);
  modelInfo();
  hwInfo();
}
function readControls() {
  const q = $("quant").value, kv = $("kv").value;
  state.quant = [q === "fp16" ? "" : q, kv].filter(Boolean).join(",");
  state.hardware = $("hardware").value;
  state.vs = $("vs").value;
  state.tp = $("tp").value;
  for (const k of ["batch", "input_len", "output_len", "chunk", "mesh_batch", "mesh_seq", "mesh_output"]) state[k] = $(k).value.trim();
  state.flash = $("flash").checked ? "1" : "0";
  state.graphs = $("graphs").checked ? "1" : "0";
  state.profile = $("profile").value;
}
function modelInfo() {
  if (config) {
    $("model-info").textContent = "config.json: " + (config.model_type || "?") + ", " +
      (config.num_hidden_layers || config.n_layer || "?") + " layers, hidden " + (config.hidden_size || config.n_embd || "?");
    return;
  }
  const id = aliasToId.get(state.model.toLowerCase()) || state.model;
  const m = models.find((r) => r.id === id);
  $("model-info").textContent = m ? `${m.id}: ${m.model_type}, ${(m.params / 1e9).toFixed(2)} B params, ${m.layers} layers, ` +
    `${m.heads}/${m.kv_heads} heads${m.moe ? ", MoE" : ""}${m.mla ? ", MLA" : ""}` : "";
}
function hwInfo() {
  const d = devices.find((r) => r.id === state.hardware);
  $("hw-info").textContent = d ? `${d.memory_gb} GB, ${fixed(d.mem_bw_gb_s, 0)} GB/s, ` +
    `${d.bf16_tflops || d.fp16_tflops || "?"} TFLOPS 16-bit` + (d.fp8_tflops ? `, ${d.fp8_tflops} FP8` : "") : "";
}
function deviceOptions(sel, withNone) {
  sel.innerHTML = "";
  if (withNone) sel.append(new Option("(none)", ""));
  const byVendor = new Map();
  for (const d of devices) {
    if (!byVendor.has(d.vendor || "other")) byVendor.set(d.vendor || "other", []);
    byVendor.get(d.vendor || "other").push(d);
  }
  for (const [v, ds] of byVendor) {
    const g = document.createElement("optgroup");
    g.label = v;
    for (const d of ds) g.append(new Option(`${d.name || d.id} (${d.memory_gb} GB)`, d.id));
    sel.append(g);
  }
}

// -- API ----------------------------------------------------------------------------------
async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await r.json().catch(() => ({ detail: `HTTP ${r.status}` }));
  if (!r.ok) {
    const msg = data.message || (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail));
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return data;
}
function int(k) {   // a number when the field holds one; else the text, for the server to name
  const s = String(state[k]).trim(), v = Number(s);
  return s !== "" && Number.isFinite(v) ? v : s;
}
function common() {
  const b = { quant: state.quant || null, flash: state.flash !== "0", cuda_graphs: state.graphs === "1",
              profile: state.profile, tp: int("tp") };
  if (state.chunk !== "") b.prefill_chunk = int("chunk");
  if (config) { b.config = config; } else { b.model = state.model; }
  return b;
}
function schedule() {
  readControls();
  writeUrl();
  clearTimeout(timer);
  timer = setTimeout(run, 150);
}
async function run() {
  const my = ++pending;
  document.body.dataset.state = "busy";
  const base = common();
  const hws = [state.hardware].concat(state.vs && state.vs !== state.hardware ? [state.vs] : []);
  const wl = { batch: int("batch"), input_len: int("input_len"), output_len: int("output_len") };
  const jobs = [
    post("/api/analyze", { ...base, hardware: state.hardware, ...wl }),
    post("/api/roofline", { ...base, hardware: hws, ...wl }),
    hws.length > 1 ? post("/api/compare", {
      ...base, hardware: hws, batch: state.mesh_batch, seq: state.mesh_seq, output_len: int("mesh_output"),
    }) : Promise.resolve(null),
  ];
  // Each request is shown as soon as it settles, so an error (or a result) never waits for
  // a slower request; an analyze error stands alone (the others usually repeat it).
  const errors = {};
  const current = () => my === pending;   // false once a newer request has started
  const showErrors = () => {
    const list = errors.analyze ? [errors.analyze] : Object.values(errors);
    $("error").hidden = list.length === 0;
    $("error").textContent = list.join("\n");
  };
  const pa = jobs[0].then((a) => {
    if (!current()) return;
    lastAnalysis = a;
    renderAnalysis(a);
    $("results").classList.remove("stale");
  }, (e) => {
    if (!current()) return;
    errors.analyze = e.message;
    showErrors();
    $("results").classList.add("stale");
    document.body.dataset.failed = "analyze";
  });
  const pr = jobs[1].then((r) => { if (current()) renderRoofline(r); }, (e) => {
    if (!current()) return;
    errors.roofline = "roofline: " + e.message;
    showErrors();
  });
  const pc = jobs[2].then((c) => {
    if (!current()) return;
    if (c) { renderCompare(c, hws); return; }
    $("compare-summary").textContent = "Choose a second device (other than the first) to compare.";
    if (window.Plotly) Plotly.purge($("compare-chart"));
    $("cmp-sub").textContent = "";
  }, (e) => {
    if (current()) $("compare-summary").textContent = "comparison: " + e.message;
  });
  delete document.body.dataset.failed;
  $("error").hidden = true;
  await Promise.allSettled([pa, pr, pc]);
  if (!current()) return;               // a newer request is on its way
  document.body.dataset.rev = String(++rev);
  document.body.dataset.state = errors.analyze ? "error" : "ready";
}

// -- summary ----------------------------------------------------------------------------------
function setVal(id, value, text) {
  const el = $(id);
  el.dataset.value = value === null || value === undefined ? "" : String(value);
  el.textContent = text;
}
function renderAnalysis(d) {
  const where = d.devices === 1 ? d.hardware : `${d.devices} x ${d.hardware} (${d.layout})`;
  $("title").innerHTML = `<span id="s-model">${esc(d.model)}</span> on <span id="s-hardware">${esc(where)}</span>` +
    `<span class="sub"> ${esc(d.precision.label)}, batch ${d.batch}, input ${d.input_len}, output ${d.output_len}, ` +
    `attention ${d.flash ? "fused" : "unfused"}${d.cuda_graphs ? ", decode from CUDA graphs" : ""}` +
    `${d.prefill_chunk ? `, prefill in chunks of ${d.prefill_chunk}` : ""}, ` +
    `profile ${esc(d.profile || state.profile)}</span>`;
  setVal("ttft", d.ttft_s, secs(d.ttft_s));
  setVal("tpot", d.tpot_s, d.tpot_s === null ? "- (output = 1)" : secs(d.tpot_s));
  setVal("throughput", d.throughput_tok_s, fixed(d.throughput_tok_s, 1));
  setVal("e2e", d.e2e_s, secs(d.e2e_s));
  setVal("max_batch", d.max_batch, String(d.max_batch));
  const w = d.warnings || [];
  $("warnings").hidden = w.length === 0;
  $("warnings").textContent = w.map((x) => "warning: " + x).join("\n");
  renderMemory(d.memory);
  renderBoundMix(d);
  renderOps();
}
function renderMemory(m) {
  const parts = [["weights", m.weights_bytes, "#4e79a7"], ["KV cache", m.kv_cache_bytes, "#f28e2b"],
                 ["activations", m.activation_bytes, "#76b7b2"]];
  const scale = Math.max(m.capacity_bytes, m.total_bytes) || 1;
  let html = "";
  for (const [name, v, col] of parts) {
    const w = 100 * v / scale;
    html += `<div class="seg" style="width:${w}%;background:${col}" title="${name}: ${gb(v)}"></div>`;
  }
  html += `<div class="cap" style="left:${100 * m.capacity_bytes / scale}%" title="capacity ${gb(m.capacity_bytes)}"></div>`;
  $("membar").innerHTML = html;
  $("membar").classList.toggle("over", !m.fits);
  $("mem-legend").innerHTML = parts.map(([n, v, c]) => `<span><i style="background:${c}"></i>${n} ${gb(v)}</span>`).join("") +
    `<span><i class="capkey"></i>capacity ${gb(m.capacity_bytes)}</span>`;
  const pct = 100 * m.total_bytes / m.capacity_bytes;
  $("mem-text").innerHTML = `<span id="mem-total" data-value="${m.total_bytes}">${gb(m.total_bytes)}</span> of ` +
    `<span id="mem-capacity" data-value="${m.capacity_bytes}">${gb(m.capacity_bytes)}</span> (${pct.toFixed(0)} %) ` +
    (m.fits ? `<b class="ok" id="mem-fits" data-value="true">fits</b>` : `<b class="bad" id="mem-fits" data-value="false">does not fit</b>`);
}
function boundShares(ops, weight = 1) {
  const out = {};
  for (const o of ops) out[o.bound] = (out[o.bound] || 0) + o.time_s * weight;
  return out;
}
function renderBoundMix(d) {
  const pre = boundShares(d.prefill.ops), dec = boundShares(d.decode.ops);
  const e2e = { ...pre };
  for (const [k, v] of Object.entries(dec)) e2e[k] = (e2e[k] || 0) + v * d.decode.steps;
  const rows = [["prefill", pre], ["decode step", dec], ["end to end", e2e]];
  let html = "";
  for (const [name, sh] of rows) {
    const tot = Object.values(sh).reduce((s, v) => s + v, 0) || 1;
    html += `<div class="mixrow"><span class="mixname">${name}</span><div class="mixbar">`;
    for (const k of Object.keys(BOUND_COLORS)) {
      if (!sh[k]) continue;
      const p = 100 * sh[k] / tot;
      html += `<div style="width:${p}%;background:${BOUND_COLORS[k]}" title="${k}: ${p.toFixed(1)} %">${p >= 8 ? k + " " + p.toFixed(0) + "%" : ""}</div>`;
    }
    html += `</div></div>`;
  }
  $("boundmix").innerHTML = html;
}

// -- operator table -------------------------------------------------------------------------
const COLS = [
  ["name", "operator", (o) => esc(o.name), false],
  ["count", "n", (o) => o.count, true],
  ["flops", "FLOP", (o) => si(o.flops), true],
  ["weight_bytes", "weights", (o) => si(o.weight_bytes, "B"), true],
  ["activation_bytes", "activ.", (o) => si(o.activation_bytes, "B"), true],
  ["kv_bytes", "KV", (o) => si(o.kv_bytes, "B"), true],
  ["comm_bytes", "comm", (o) => si(o.comm_bytes, "B"), true],
  ["intensity", "FLOP/B", (o) => o.intensity === null ? "-" : g3(o.intensity), true],
  ["time_s", "time", (o) => secs(o.time_s), true],
  ["share", "%", (o) => (100 * o.share).toFixed(1), true],
  ["bound", "bound", (o) => `<span class="bound b-${esc(o.bound)}">${esc(o.bound)}</span>`, false],
];
function renderOps() {
  const d = lastAnalysis;
  if (!d) return;
  const ph = d[state.phase];
  const total = ph.ops.reduce((s, o) => s + o.time_s, 0) || 1;
  let ops = ph.ops.map((o, i) => ({ ...o, share: o.time_s / total, _i: i }));
  if (sortKey) {
    ops.sort((a, b) => {
      const x = a[sortKey], y = b[sortKey];
      const c = typeof x === "string" ? x.localeCompare(y) : (x ?? -Infinity) - (y ?? -Infinity);
      return c * sortDir || a._i - b._i;
    });
  }
  const t = $("ops");
  t.tHead.innerHTML = "<tr>" + COLS.map(([k, label, , num]) => {
    const aria = k === sortKey ? (sortDir > 0 ? "ascending" : "descending") : "none";
    const arrow = k === sortKey ? (sortDir > 0 ? " ▲" : " ▼") : "";
    return `<th data-key="${k}" class="${num ? "num" : ""}" aria-sort="${aria}">${label}${arrow}</th>`;
  }).join("") + "</tr>";
  t.tBodies[0].innerHTML = ops.map((o) => `<tr data-op="${esc(o.name)}">` +
    COLS.map(([k, , f, num]) => `<td class="${num ? "num" : ""}">${f(o)}</td>`).join("") + "</tr>").join("");
  const sum = (k) => ph.ops.reduce((s, o) => s + o[k], 0);
  t.tFoot.innerHTML = `<tr><td>total</td><td></td><td class="num">${si(ph.flops)}</td><td class="num">${si(sum("weight_bytes"), "B")}</td>` +
    `<td class="num">${si(sum("activation_bytes"), "B")}</td><td class="num">${si(sum("kv_bytes"), "B")}</td>` +
    `<td class="num">${si(sum("comm_bytes"), "B")}</td><td class="num">${ph.bytes ? g3(ph.flops / ph.bytes) : "-"}</td>` +
    `<td class="num">${secs(ph.time_s)}</td><td class="num">100</td><td></td></tr>`;
}

// -- charts -------------------------------------------------------------------------------
const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
function noPlotly(el) {
  el.innerHTML = '<div class="hint">Charts need plotly.js (pip install "llmroofline[web]").</div>';
}
function renderRoofline(r) {
  const el = $("roofline-chart");
  if (!window.Plotly) return noPlotly(el);
  const ids = Object.keys(r.ridges);
  const xs = r.points.map((p) => p.intensity).concat(ids.map((h) => r.ridges[h].intensity)).filter((x) => x > 0);
  const xmin = Math.pow(10, Math.floor(Math.log10(Math.max(Math.min(...xs), 1e-3)) - 0.3));
  const xmax = Math.pow(10, Math.ceil(Math.log10(Math.max(...xs)) + 0.3));
  const grid = [];
  for (let i = 0; i <= 200; i++) grid.push(xmin * Math.pow(xmax / xmin, i / 200));
  const traces = [];
  ids.forEach((h, k) => {
    const rd = r.ridges[h], c = DEVICE_COLORS[k % DEVICE_COLORS.length];
    traces.push({ x: grid, y: grid.map((x) => Math.min(rd.flops_s, x * rd.bytes_s)), mode: "lines",
      line: { color: c, width: 3 }, name: `${h}: ${g3(rd.flops_s / 1e12)} TFLOP/s, ${fixed(rd.bytes_s / 1e9, 0)} GB/s`,
      hovertemplate: "%{x:.3g} FLOP/B → %{y:.3s}FLOP/s<extra>" + esc(h) + "</extra>" });
    traces.push({ x: [rd.intensity], y: [rd.flops_s], mode: "markers", showlegend: false,
      marker: { color: c, size: 9, line: { color: "black", width: 1 } },
      hovertemplate: `ridge point ${g3(rd.intensity)} FLOP/B<extra>${esc(h)}</extra>` });
    for (const [ph, sym] of [["prefill", "circle"], ["decode", "triangle-up"]]) {
      const sel = r.points.filter((p) => p.hardware === h && p.phase === ph);
      if (!sel.length) continue;
      traces.push({ x: sel.map((p) => p.intensity), y: sel.map((p) => p.flops_s), mode: "markers",
        name: `${h} ${ph}${ph === "decode" ? " (mean step)" : ""}`,
        marker: { color: c, symbol: sym, opacity: 0.8, size: sel.map((p) => 7 + 28 * Math.sqrt(p.share)),
                  line: { color: sel.map((p) => BOUND_COLORS[p.bound] || "black"), width: 2 } },
        text: sel.map((p) => `<b>${esc(p.op)}</b> (${ph})<br>${g3(p.intensity)} FLOP/B, ${g3(p.flops_s / 1e12)} TFLOP/s<br>` +
          `${(100 * p.share).toFixed(1)} % of ${ph} time, ${secs(p.time_s)}<br>${p.bound}-bound`),
        hoverinfo: "text" });
    }
  });
  const ymax = Math.max(...ids.map((h) => r.ridges[h].flops_s));
  const ymin = Math.min(...r.points.map((p) => p.flops_s).concat([xmin * Math.min(...ids.map((h) => r.ridges[h].bytes_s))])) / 2;
  const decades = [];
  for (let e = Math.ceil(Math.log10(ymin)); e <= Math.floor(Math.log10(ymax * 3)); e++) decades.push(Math.pow(10, e));
  const layout = {
    margin: { l: 60, r: 10, t: 10, b: 50 }, height: 440, plot_bgcolor: "white",
    xaxis: { type: "log", title: { text: "arithmetic intensity (FLOP / byte)" }, range: [Math.log10(xmin), Math.log10(xmax)], gridcolor: "#eee" },
    yaxis: { type: "log", title: { text: "attained FLOP/s" }, range: [Math.log10(ymin), Math.log10(ymax * 3)], gridcolor: "#eee",
             tickvals: decades, ticktext: decades.map((v) => si(v)) },
    legend: { orientation: "h", y: -0.18, font: { size: 11 } },
    hoverlabel: { align: "left" },
  };
  Plotly.react(el, traces, layout, PLOT_CONFIG);
}
function ratioTicks(lim) {
  const cand = [1 / 16, 1 / 8, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 0.8, 1, 1.25, 1.5, 2, 3, 4, 8, 16];
  const keep = cand.filter((r) => Math.abs(Math.log2(r)) <= lim + 1e-9);
  return { vals: keep.map(Math.log2), text: keep.map((r) => (r < 0.3 ? "1/" + g3(1 / r) : g3(Math.round(r * 100) / 100))) };
}
function renderCompare(data, hws) {
  const el = $("compare-chart");
  if (!data) return;
  const m = data.meshes[0];
  const ids = m.devices.map((d) => d.hardware);
  $("cmp-sub").textContent = `decode throughput ${ids[0]} / ${ids[1]} over batch x sequence (output ${m.output_len} tokens, input = seq − ${m.output_len / 2})`;
  const won = m.devices.map((d) => `${d.hardware} faster in ${(100 * d.fraction).toFixed(0)} %`).join(", ");
  const only = m.devices.filter((d) => d.cells_only_this_fits).map((d) => `only ${d.hardware} fits ${d.cells_only_this_fits}`).join(", ");
  $("compare-summary").innerHTML = `${m.cells_compared} of ${m.cells} cells compared: ${esc(won)}` + (only ? `; ${esc(only)}` : "") +
    (m.ratio_min !== undefined ? `; ratio ${g3(m.ratio_min)} … ${g3(m.ratio_max)}` : "") +
    `<div class="legend"><span><i style="background:#2166ac"></i>${esc(ids[0])} faster</span>` +
    `<span><i style="background:#b2182b"></i>${esc(ids[1])} faster</span>` +
    `<span><i style="background:${MASK_COLORS[1]}"></i>only ${esc(ids[0])} fits</span>` +
    `<span><i style="background:${MASK_COLORS[2]}"></i>only ${esc(ids[1])} fits</span>` +
    `<span><i style="background:${MASK_COLORS[0]}"></i>fits neither, or beyond the model's context</span></div>`;
  if (!window.Plotly) return noPlotly(el);
  const x = m.seq.map(Math.log2), y = m.batch.map(Math.log2);
  const tp0 = m.throughput_tok_s[ids[0]], tp1 = m.throughput_tok_s[ids[1]];
  const f0 = m.fits[ids[0]], f1 = m.fits[ids[1]];
  const hover = [], zr = [], zm = [];
  let lim = Math.log2(1.25);
  for (let i = 0; i < m.batch.length; i++) {
    const hr = [], rr = [], mr = [];
    for (let j = 0; j < m.seq.length; j++) {
      const r = m.ratio[i][j];
      const parts = [`batch ${m.batch[i]}, seq ${m.seq[j]} (input ${m.input_len[j]})`];
      parts.push(`${ids[0]}: ${tp0[i][j] === null ? "-" : fixed(tp0[i][j], 0)} tok/s${f0[i][j] ? "" : " (does not fit)"}`);
      parts.push(`${ids[1]}: ${tp1[i][j] === null ? "-" : fixed(tp1[i][j], 0)} tok/s${f1[i][j] ? "" : " (does not fit)"}`);
      if (tp0[i][j] === null) parts.push("beyond the model's context");
      else if (r !== null) parts.push(`ratio ${r.toFixed(3)}`);
      hr.push(parts.join("<br>"));
      const z = r === null ? null : Math.log2(r);
      if (z !== null) lim = Math.max(lim, Math.abs(z));
      rr.push(z);
      mr.push(r === null ? (f0[i][j] && !f1[i][j] ? 1 : (!f0[i][j] && f1[i][j] ? 2 : 0)) : null);
    }
    hover.push(hr); zr.push(rr); zm.push(mr);
  }
  lim *= 1.02;
  const ticks = ratioTicks(lim);
  const axis = (vals, title) => {   // plots.axis_ticks: both ends, powers of two between
    const lo = Math.log2(vals[0]), hi = Math.log2(vals[vals.length - 1]);
    const step = Math.max(1, Math.ceil((hi - lo) / 8)), tv = [lo];
    for (let t = Math.ceil(lo); t <= Math.floor(hi); t += step) if (t - lo >= step / 2 && hi - t >= step / 2) tv.push(t);
    if (hi > lo) tv.push(hi);
    return { title: { text: title }, tickvals: tv, ticktext: tv.map((t) => short(Math.round(Math.pow(2, t)))) };
  };
  const traces = [
    { type: "heatmap", x, y, z: zm, zmin: -0.5, zmax: 2.5, showscale: false, hoverinfo: "text", text: hover, name: "masked",
      colorscale: [[0, MASK_COLORS[0]], [0.333, MASK_COLORS[0]], [0.333, MASK_COLORS[1]], [0.667, MASK_COLORS[1]],
                   [0.667, MASK_COLORS[2]], [1, MASK_COLORS[2]]] },
    { type: "heatmap", x, y, z: zr, zmin: -lim, zmax: lim, zmid: 0, hoverinfo: "text", text: hover, name: "ratio",
      colorscale: [[0, "#b2182b"], [0.25, "#ef8a62"], [0.5, "#f7f7f7"], [0.75, "#67a9cf"], [1, "#2166ac"]],
      colorbar: { title: { text: `${ids[0]} / ${ids[1]}`, side: "right" }, tickvals: ticks.vals, ticktext: ticks.text, thickness: 14 } },
  ];
  const layout = {
    margin: { l: 60, r: 10, t: 10, b: 50 }, height: 440, plot_bgcolor: "white",
    xaxis: axis(m.seq, "sequence length (mean KV tokens of decode)"), yaxis: axis(m.batch, "batch size"),
  };
  Plotly.react(el, traces, layout, PLOT_CONFIG);
}

// -- events ------------------------------------------------------------------------------------
function useModel(name) {
  const v = name.trim();
  if (!v) return;
  config = null;
  state.cfg = "";
  state.model = aliasToId.get(v.toLowerCase()) || v;
  fillControls();
  schedule();
}
async function useConfig(text) {
  let obj;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    $("error").hidden = false;
    $("error").textContent = "config: not valid JSON (" + e.message + ")";
    return;
  }
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) {
    $("error").hidden = false;
    $("error").textContent = "config: expected a JSON object";
    return;
  }
  config = obj;
  state.cfg = await packConfig(obj);
  fillControls();
  schedule();
}
function bind() {
  $("controls").addEventListener("submit", (e) => e.preventDefault());
  $("model").addEventListener("change", (e) => useModel(e.target.value));
  $("model").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); useModel(e.target.value); } });
  for (const id of ["hardware", "vs", "tp", "quant", "kv", "batch", "input_len", "output_len", "chunk", "flash", "graphs", "profile",
                    "mesh_batch", "mesh_seq", "mesh_output"]) {
    $(id).addEventListener("change", () => { schedule(); hwInfo(); });
  }
  for (const b of document.querySelectorAll("[data-phase]")) {
    b.addEventListener("click", () => { state.phase = b.dataset.phase; fillControls(); writeUrl(); renderOps(); });
  }
  $("ops").tHead.addEventListener("click", (e) => {
    const th = e.target.closest("th");
    if (!th) return;
    const k = th.dataset.key;
    if (sortKey === k) { sortDir = -sortDir; } else { sortKey = k; sortDir = ["name", "bound"].includes(k) ? 1 : -1; }
    state.sort = (sortDir < 0 ? "-" : "") + sortKey;
    writeUrl();
    renderOps();
  });
  $("cfg-use").addEventListener("click", () => useConfig($("cfg-text").value));
  $("cfg-clear").addEventListener("click", () => useModel(state.model || DEFAULTS.model));
  $("cfg-file").addEventListener("change", async (e) => {
    const f = e.target.files[0];
    if (!f) return;
    const text = await f.text();
    $("cfg-text").value = text;
    useConfig(text);
  });
  $("share").addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(location.href); $("share").textContent = "Copied"; }
    catch (e) { prompt("Link to this view:", location.href); }
    setTimeout(() => { $("share").textContent = "Copy link"; }, 1500);
  });
}

async function init() {
  readUrl();
  if (state.sort) { sortDir = state.sort.startsWith("-") ? -1 : 1; sortKey = state.sort.replace(/^-/, ""); }
  if (state.vs === "none") state.vs = "";
  try {
    [models, devices] = await Promise.all([fetch("/api/models").then((r) => r.json()), fetch("/api/hardware").then((r) => r.json())]);
  } catch (e) {
    $("error").hidden = false;
    $("error").textContent = "cannot reach the server: " + e.message;
    document.body.dataset.state = "error";
    return;
  }
  const dl = $("model-list");
  for (const m of models) {
    aliasToId.set(m.id.toLowerCase(), m.id);
    for (const a of m.aliases) aliasToId.set(a, m.id);
    dl.append(new Option(`${(m.params / 1e9).toFixed(1)} B · ${m.model_type}${m.aliases.length ? " · " + m.aliases[0] : ""}`, m.id));
  }
  deviceOptions($("hardware"), false);
  deviceOptions($("vs"), true);
  if (state.cfg) {
    try {
      config = await unpackConfig(state.cfg);
      $("cfg-text").value = JSON.stringify(config, null, 1);
      $("cfg-box").open = true;
    } catch (e) {
      config = null;
      state.cfg = "";
    }
  }
  fillControls();
  bind();
  readControls();
  run();
}
document.addEventListener("DOMContentLoaded", init);
