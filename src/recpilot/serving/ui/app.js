// The users / history / recommendations page.
"use strict";

(() => {
  const { api, el, clear, formatTime, formatNumber, eventId, setStatus, getKey, setKey } = RecPilot;
  const $ = (id) => document.getElementById(id);

  const state = { user: null, lastIds: [], refreshes: 0, config: null, scopes: [] };

  async function loadConfig() {
    try {
      state.config = await api("/ui/api/config");
      $("model-version").textContent = state.config.model_version;
      $("k").max = String(state.config.max_k);
      $("k").value = String(Math.min(state.config.default_k, state.config.max_k));
    } catch (err) {
      setStatus($("status"), `cannot reach the server: ${err.message}`, true);
    }
  }

  async function loadPolicies() {
    const select = $("policy");
    try {
      const info = await api("/policies");
      const chosen = select.value;
      clear(select);
      select.append(el("option", { value: "" }, info.default ? `default (${info.default})` : "default"));
      for (const p of info.policies) {
        select.append(el("option", { value: p.name, title: p.description }, p.name));
      }
      select.value = info.policies.some((p) => p.name === chosen) ? chosen : "";
    } catch (err) {
      select.title = `policies unavailable: ${err.message}`;
    }
  }

  async function checkKey() {
    const status = $("key-status");
    if (!getKey()) {
      state.scopes = [];
      setStatus(status, "no key: recommendations only (if the server allows it)");
      return;
    }
    try {
      const info = await api("/ui/api/key");
      state.scopes = info.scopes;
      setStatus(status, `key "${info.name}" accepted: ${info.scopes.join(", ")}`);
    } catch (err) {
      state.scopes = [];
      setStatus(status, err.message, true);
    }
  }

  async function loadUsers() {
    const list = $("users");
    clear(list);
    if (!getKey()) {
      setStatus($("users-status"), "type an API key to list users, or open a user by id");
      return;
    }
    try {
      const { users } = await api("/ui/api/users?limit=50");
      for (const user of users) {
        const item = el("li", { dataset: { userId: user.user_id }, tabindex: 0, role: "button" },
          el("span", {}, user.user_id), el("span", { class: "hint" }, `${user.events} events`));
        if (user.user_id === state.user) item.classList.add("selected");
        item.addEventListener("click", () => openUser(user.user_id));
        item.addEventListener("keydown", (e) => { if (e.key === "Enter") openUser(user.user_id); });
        list.append(item);
      }
      setStatus($("users-status"), users.length ? "" : "no events stored yet: open a new user by id");
    } catch (err) {
      setStatus($("users-status"), err.message, true);
    }
  }

  async function lookup(ids) {
    if (!ids.length) return {};
    try {
      const { items } = await api("/ui/api/items/lookup", { method: "POST", body: { item_ids: ids } });
      return items;
    } catch (_) {
      return {};  // titles are a nicety: show ids
    }
  }

  function itemLine(itemId, info) {
    const title = info && info.title ? info.title : itemId;
    const tags = [];
    if (info && info.category) tags.push(el("span", { class: "tag" }, info.category));
    if (info && info.title) tags.push(el("span", { class: "tag" }, `id ${itemId}`));
    return [el("span", { class: "title" }, title), " ", ...tags];
  }

  function recommendationsQuery() {
    const params = new URLSearchParams();
    const k = parseInt($("k").value, 10);
    if (Number.isFinite(k) && k > 0) params.set("k", String(k));
    const category = $("category").value.trim();
    if (category) params.set("category", category);
    const policy = $("policy").value;
    if (policy) params.set("policy", policy);
    return params.toString();
  }

  async function refresh(note) {
    if (!state.user) return;
    const user = encodeURIComponent(state.user);
    const recsPromise = api(`/users/${user}/recommendations?${recommendationsQuery()}`);
    const historyPromise = getKey()
      ? api(`/ui/api/users/${user}/history`).catch((err) => ({ error: err.message }))
      : Promise.resolve({ error: "type an API key to see the history" });
    let recs, history;
    try {
      [recs, history] = await Promise.all([recsPromise, historyPromise]);
    } catch (err) {
      setStatus($("status"), `recommendations failed: ${err.message}`, true);
      return;
    }
    const infos = await lookup(recs.items.map((i) => i.item_id));
    renderRecommendations(recs, infos);
    renderHistory(history);
    $("model-version").textContent = recs.model_version;
    if (note) setStatus($("status"), note);
  }

  function renderRecommendations(recs, infos) {
    const list = $("recs");
    clear(list);
    const previous = new Set(state.lastIds);
    const ids = recs.items.map((i) => i.item_id);
    const changed = ids.filter((id) => !previous.has(id)).length;
    for (const rec of recs.items) {
      const info = infos[rec.item_id];
      const li = el("li", {
        tabindex: 0, role: "button", "data-testid": "rec-item",
        dataset: { itemId: rec.item_id },
        title: `send a ${$("event-type").value} event for this item`,
      },
      ...itemLine(rec.item_id, info),
      el("span", { class: "meta" },
        el("span", { class: "reason", "data-testid": "reason" }, rec.reason),
        ` · score ${formatNumber(rec.score, 4)}`,
        rec.propensity !== undefined && rec.propensity < 1 ? ` · shown with p ${formatNumber(rec.propensity, 3)}` : ""));
      if (state.lastIds.length && !previous.has(rec.item_id)) li.classList.add("changed");
      li.addEventListener("click", () => sendEvent(rec.item_id, info));
      li.addEventListener("keydown", (e) => { if (e.key === "Enter") sendEvent(rec.item_id, info); });
      list.append(li);
    }
    if (!recs.items.length) list.append(el("li", { class: "hint" }, "no recommendations"));
    const ignored = recs.ignored_items.length ? ` · ${recs.ignored_items.length} history items unknown to the model` : "";
    const policy = recs.policy ? ` · policy ${recs.policy}` : "";
    $("rec-meta").textContent = `model ${recs.model_version}${policy}${ignored}` +
      (state.lastIds.length ? ` · ${changed} new since last list` : "");
    state.lastIds = ids;
    state.refreshes += 1;
    list.dataset.refresh = String(state.refreshes);
  }

  function renderHistory(history) {
    const list = $("history");
    clear(list);
    if (history.error) {
      list.append(el("li", { class: "hint" }, history.error));
      return;
    }
    const events = history.events.slice().reverse();
    for (const event of events) {
      list.append(el("li", { "data-testid": "history-item", dataset: { itemId: event.item_id } },
        ...itemLine(event.item_id, event),
        el("span", { class: "meta" }, `${event.event_type} · ${formatTime(event.timestamp)}`)));
    }
    if (!events.length) list.append(el("li", { class: "hint" }, "no events yet: a new user"));
  }

  async function sendEvent(itemId, info) {
    if (!state.user) return;
    if (!getKey()) {
      setStatus($("status"), "type an API key with the write scope to send events", true);
      return;
    }
    const eventType = $("event-type").value;
    const body = { events: [{ event_id: eventId(), user_id: state.user, item_id: itemId, event_type: eventType }] };
    try {
      const result = await api("/events", { method: "POST", body });
      const name = info && info.title ? info.title : itemId;
      await refresh(`sent ${eventType} on ${name} (stored: ${result.stored}); recommendations updated`);
      loadUsers();
    } catch (err) {
      setStatus($("status"), `event not sent: ${err.message}`, true);
    }
  }

  function openUser(userId) {
    const id = userId.trim();
    if (!id) return;
    state.user = id;
    state.lastIds = [];
    $("user-view").hidden = false;
    $("current-user").textContent = id;
    $("user-id").value = id;
    for (const li of $("users").children) li.classList.toggle("selected", li.dataset.userId === id);
    setStatus($("status"), "");
    refresh();
  }

  function start() {
    $("key-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      setKey($("api-key").value.trim());
      $("api-key").value = "";
      await checkKey();
      await loadUsers();
      if (state.user) refresh();
    });
    $("key-forget").addEventListener("click", async () => {
      setKey("");
      await checkKey();
      await loadUsers();
    });
    $("user-form").addEventListener("submit", (e) => { e.preventDefault(); openUser($("user-id").value); });
    $("users-refresh").addEventListener("click", loadUsers);
    $("refresh").addEventListener("click", () => refresh());
    $("k").addEventListener("change", () => refresh());
    $("category").addEventListener("change", () => refresh());
    $("policy").addEventListener("change", () => refresh());
    $("refresh").addEventListener("click", loadPolicies);  // the policy file may have changed
    loadConfig().then(checkKey).then(loadPolicies).then(loadUsers);
  }

  start();
})();
