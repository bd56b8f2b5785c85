// Shared helpers of the RecPilot web UI: the API key of this tab, fetch, element building.
// Every element is built with textContent (never innerHTML), so catalogue titles and other
// stored strings cannot inject markup.
"use strict";

const RecPilot = (() => {
  const KEY_SLOT = "recpilot.apiKey";

  function getKey() {
    try { return window.sessionStorage.getItem(KEY_SLOT) || ""; } catch (_) { return ""; }
  }

  function setKey(value) {
    try {
      if (value) window.sessionStorage.setItem(KEY_SLOT, value);
      else window.sessionStorage.removeItem(KEY_SLOT);
    } catch (_) { /* storage disabled: the key lives until the page reloads */ }
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  // JSON request to this server; the tab's key (if any) goes in X-API-Key.
  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    const key = getKey();
    if (key) headers["X-API-Key"] = key;
    const init = { method: options.method || "GET", headers, cache: "no-store" };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const response = await fetch(path, init);
    let payload = null;
    try { payload = await response.json(); } catch (_) { payload = null; }
    if (!response.ok) {
      const message = payload && payload.message ? payload.message : `HTTP ${response.status}`;
      throw new ApiError(response.status, message);
    }
    return payload;
  }

  // el("li", {class: "x", dataset: {itemId: "1"}}, "text", child, ...)
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined) continue;
      if (name === "dataset") Object.assign(node.dataset, value);
      else if (name === "class") node.className = value;
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function formatTime(ms) {
    if (!Number.isFinite(ms) || ms <= 0) return "";
    return new Date(ms).toLocaleString();
  }

  function formatNumber(value, digits = 4) {
    if (typeof value !== "number" || !Number.isFinite(value)) return String(value);
    if (Number.isInteger(value)) return value.toLocaleString("en");
    return value.toFixed(digits);
  }

  // A random event id: crypto.getRandomValues works outside secure contexts too.
  function eventId() {
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return "ui-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function setStatus(node, text, isError = false) {
    node.textContent = text;
    node.classList.toggle("error", isError);
  }

  return { getKey, setKey, api, el, clear, formatTime, formatNumber, eventId, setStatus, ApiError };
})();
