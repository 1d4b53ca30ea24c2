// nerbilstm web page: sends the text to /api/tag and shows the entities highlighted.
// Everything the user typed or the server returned goes into the page as text nodes
// (textContent), never as HTML.
"use strict";

(() => {
  // Colours, legend and descriptions come from the loaded model (GET /api/model): its entity
  // types take the palette's colours (style.css: .pal-0 ... .pal-11) in their order.
  const PALETTE_SIZE = 12;
  // For models trained before config.json kept an example sentence of their own.
  const FALLBACK_EXAMPLE =
    "Marie Curie was born in Warsaw and worked in Paris, where she won the Nobel Prize in 1911.";
  const types = new Map(); // entity type -> {description, index}
  let example = FALLBACK_EXAMPLE;

  const $ = (id) => document.getElementById(id);
  const els = {};
  let maxBodyBytes = null;
  let requestSeq = 0;

  const typeName = (label) => (types.has(label) ? types.get(label).description : label);
  const typeClass = (label) => (types.has(label) ? "pal-" + (types.get(label).index % PALETTE_SIZE) : "ent-other");
  const percent = (p) => (100 * p).toFixed(1) + "%";

  // "LOC · Location" (on a phone the description is left out: style.css).
  function typeCell(label) {
    const cell = el("td", { title: typeName(label) }, label);
    if (typeName(label) !== label) cell.append(el("span", { className: "type-description" }, ` · ${typeName(label)}`));
    return cell;
  }

  function el(tag, props = {}, text = null) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "dataset") Object.assign(node.dataset, value);
      else node[key] = value;
    }
    if (text !== null) node.textContent = text;
    return node;
  }

  function setStatus(message, kind = "") {
    els.status.textContent = message;
    els.status.className = "status" + (kind ? " " + kind : "");
  }

  function setBusy(busy) {
    els.button.disabled = busy;
    els.button.classList.toggle("busy", busy);
    els.button.textContent = busy ? "Tagging…" : "Find entities";
  }

  // The server's offsets count Unicode code points (Python string indices); JavaScript
  // strings count UTF-16 units. Slicing an array of code points keeps emoji and the like
  // from shifting every entity after them.
  function render(doc, elapsedMs) {
    const chars = Array.from(doc.text);
    const output = els.output;
    output.replaceChildren();
    let pos = 0;
    for (const ent of doc.entities) {
      if (ent.start < pos || ent.end <= ent.start) continue; // never expected: overlapping or empty
      if (ent.start > pos) output.append(document.createTextNode(chars.slice(pos, ent.start).join("")));
      const mark = el("mark", {
        className: "ent " + typeClass(ent.label),
        title: `${typeName(ent.label)} (${ent.label}) · confidence ${percent(ent.score)}`,
        tabIndex: 0,
        dataset: { label: ent.label, score: String(ent.score), start: String(ent.start), end: String(ent.end) },
      }, chars.slice(ent.start, ent.end).join(""));
      output.append(mark);
      pos = ent.end;
    }
    if (pos < chars.length) output.append(document.createTextNode(chars.slice(pos).join("")));

    const tbody = els.table.tBodies[0];
    tbody.replaceChildren();
    for (const ent of doc.entities) {
      const row = el("tr");
      const cell = el("td");
      cell.append(el("span", { className: "chip " + typeClass(ent.label) }, ent.text));
      row.append(
        cell,
        typeCell(ent.label),
        el("td", { className: "num" }, percent(ent.score)),
        el("td", { className: "num muted offsets" }, `${ent.start}–${ent.end}`),
      );
      tbody.append(row);
    }
    const n = doc.entities.length;
    els.table.hidden = n === 0;
    els.none.hidden = n !== 0;
    els.card.hidden = false;
    const sentences = doc.sentences.length;
    setStatus(`${n} ${n === 1 ? "entity" : "entities"} in ${sentences} ${sentences === 1 ? "sentence" : "sentences"}` +
              ` · ${doc.tokens.length} tokens · ${Math.round(elapsedMs)} ms`, "ok");
  }

  async function tag() {
    const text = els.text.value;
    if (!text.trim()) {
      setStatus("Type or paste some text first.", "error");
      els.text.focus();
      return;
    }
    const body = JSON.stringify({ text });
    if (maxBodyBytes !== null && new Blob([body]).size > maxBodyBytes) {
      setStatus(`This text is too long: the server takes at most ${maxBodyBytes.toLocaleString()} bytes a request.`, "error");
      return;
    }
    const seq = ++requestSeq;
    setBusy(true);
    setStatus("Tagging…");
    const t0 = performance.now();
    try {
      const response = await fetch("/api/tag", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body,
      });
      let data = null;
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
      if (seq !== requestSeq) return; // a newer request has been sent meanwhile
      if (!response.ok) {
        throw new Error((data && data.error) || `the server answered ${response.status} ${response.statusText}`);
      }
      render(data.results[0], performance.now() - t0);
    } catch (err) {
      if (seq === requestSeq) setStatus("Could not tag the text: " + err.message, "error");
    } finally {
      if (seq === requestSeq) setBusy(false);
    }
  }

  function describeModel(info) {
    const dl = els.modelInfo;
    dl.replaceChildren();
    const add = (term, value) => {
      if (value === undefined || value === null || value === "") return;
      dl.append(el("dt", {}, term), el("dd", {}, String(value)));
    };
    const model = info.model || {};
    const metrics = info.metrics || {};
    const f1 = (split) => (metrics[split] && typeof metrics[split].entity_f1 === "number"
      ? metrics[split].entity_f1.toFixed(3) : null);
    add("Architecture", model.decoder
      ? `BiLSTM-${model.decoder === "crf" ? "CRF" : "softmax"}, ${model.layers} × ${model.hidden_size} units`
      : null);
    add("Entity types", (info.entity_types || []).join(", "));
    add("Dev entity F1", f1("dev"));
    add("Test entity F1", f1("test"));
    if (metrics.best_epoch) add("Best epoch", `${metrics.best_epoch} of ${metrics.epochs_run}`);
    if (info.server) add("Request limit", `${Number(info.server.max_body_bytes).toLocaleString()} bytes`);
  }

  // The legend: one item per entity type of the model, its colour and its description (the
  // bare name where none is known).
  function showLegend(entityTypes, descriptions) {
    types.clear();
    els.legend.replaceChildren();
    entityTypes.forEach((type, index) => {
      const description = descriptions[type] || type;
      types.set(type, { description, index });
      const item = el("li", { dataset: { type } });
      item.append(el("span", { className: "swatch " + typeClass(type) }, type));
      if (description !== type) item.append(el("span", { className: "description" }, description));
      els.legend.append(item);
    });
    if (entityTypes.length === 0) els.legend.append(el("li", { className: "muted" }, "this model tags no entity types"));
  }

  async function loadModelInfo() {
    try {
      const response = await fetch("/api/model", { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const info = await response.json();
      maxBodyBytes = info.server ? info.server.max_body_bytes : null;
      describeModel(info);
      showLegend(info.entity_types || [], info.entity_descriptions || {});
      if (typeof info.example === "string" && info.example.trim()) example = info.example;
      els.text.placeholder = `Type or paste text to tag, e.g. “${example}”`;
    } catch (err) {
      els.modelInfo.replaceChildren(el("dt", {}, "Status"), el("dd", {}, "unavailable: " + err.message));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    Object.assign(els, {
      text: $("text"), button: $("tag-button"), status: $("status"), output: $("output"),
      table: $("entity-table"), none: $("no-entities"), card: $("result-card"),
      legend: $("legend"), modelInfo: $("model-info"),
    });
    els.button.addEventListener("click", tag);
    els.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        tag();
      }
    });
    $("example-button").addEventListener("click", () => {
      els.text.value = example;
      tag();
    });
    $("clear-button").addEventListener("click", () => {
      els.text.value = "";
      els.card.hidden = true;
      setStatus("");
      els.text.focus();
    });
    loadModelInfo();
    els.text.focus();
  });
})();
