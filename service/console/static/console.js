// cronstream console: live preview in the editor, live updates from the event stream.
// Everything works without this script; it only makes pages react sooner.
"use strict";

(function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // The API, through the console's /console/v1/ path (it adds the cookie's token).
  async function api(path, body) {
    const init = { credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch("/console/v1/" + path, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { status: response.status, ok: response.ok, body: data };
  }

  function debounce(fn, ms) {
    let timer = null;
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  function lines(text) {
    return (text || "").split("\n").map((l) => l.trim()).filter((l) => l);
  }

  // The same spec the server builds from the form (service/console/editor.py spec_body).
  function specFrom(v) {
    const spec = {
      cron: lines(v.cron),
      intervals: lines(v.intervals).map((l) => {
        const [every, offset] = l.split("/");
        return offset && offset.trim() ? { every: every.trim(), offset: offset.trim() } : { every: every.trim() };
      }),
      exclude_cron: lines(v.exclude_cron),
      timezone: (v.timezone || "").trim() || "UTC",
      jitter: (v.jitter || "").trim() || "0s",
    };
    if ((v.start_at || "").trim()) spec.start_at = v.start_at.trim();
    if ((v.end_at || "").trim()) spec.end_at = v.end_at.trim();
    return spec;
  }

  // ---- field errors -------------------------------------------------------
  function fieldOf(apiField) {
    const parts = String(apiField).split(".");
    if ((parts[0] === "spec" || parts[0] === "policy") && parts.length > 1) return parts[1];
    return parts[0];
  }

  function showError(form, name, message) {
    const slot = form.querySelector('[data-error-for="' + name + '"]');
    const input = form.querySelector('[name="' + name + '"]');
    if (slot) {
      slot.textContent = message || "";
      slot.hidden = !message;
      if (message) slot.setAttribute("role", "alert"); else slot.removeAttribute("role");
    }
    if (input) {
      if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    }
  }

  const SPEC_FIELDS = ["cron", "intervals", "exclude_cron", "timezone", "jitter", "start_at", "end_at"];

  // ---- JSON Schema (the common keywords) for live input checks ------------
  function typeOf(value) {
    if (value === null) return "null";
    if (Array.isArray(value)) return "array";
    if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
    return typeof value;
  }

  function checkSchema(schema, value, path, out) {
    if (!schema || typeof schema !== "object" || out.length > 5) return;
    const where = path || "input";
    if (schema.type) {
      const types = Array.isArray(schema.type) ? schema.type : [schema.type];
      const t = typeOf(value);
      if (!types.includes(t) && !(t === "integer" && types.includes("number"))) {
        out.push(where + ": should be " + types.join(" or "));
        return;
      }
    }
    if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
      out.push(where + ": should be one of " + schema.enum.map((e) => JSON.stringify(e)).join(", "));
    }
    if (typeof value === "number") {
      if (schema.minimum !== undefined && value < schema.minimum) out.push(where + ": below " + schema.minimum);
      if (schema.maximum !== undefined && value > schema.maximum) out.push(where + ": above " + schema.maximum);
    }
    if (typeof value === "string") {
      if (schema.minLength !== undefined && value.length < schema.minLength) out.push(where + ": too short");
      if (schema.maxLength !== undefined && value.length > schema.maxLength) out.push(where + ": too long");
      if (schema.pattern && !new RegExp(schema.pattern, "u").test(value)) out.push(where + ": does not match " + schema.pattern);
    }
    if (typeOf(value) === "object") {
      (schema.required || []).forEach((k) => { if (!(k in value)) out.push(where + "." + k + ": is required"); });
      const props = schema.properties || {};
      Object.keys(value).forEach((k) => {
        if (props[k]) checkSchema(props[k], value[k], where + "." + k, out);
        else if (schema.additionalProperties === false) out.push(where + "." + k + ": is not allowed");
      });
    }
    if (Array.isArray(value) && schema.items) {
      value.forEach((item, i) => checkSchema(schema.items, item, where + "." + i, out));
    }
  }

  function checkInput(form) {
    const area = form.querySelector('[name="input"]');
    const select = form.querySelector('[name="workflow_id"]');
    if (!area) return;
    const text = area.value.trim();
    let value = null;
    if (text) {
      try { value = JSON.parse(text); } catch (e) { showError(form, "input", "not JSON: " + e.message); return; }
    }
    const option = select && select.selectedOptions[0];
    let schema = null;
    try { schema = option && option.dataset.schema ? JSON.parse(option.dataset.schema) : null; } catch (e) { schema = null; }
    const problems = [];
    if (schema && (text || schema.type)) checkSchema(schema, value, "input", problems);
    showError(form, "input", problems.join("; "));
  }

  // ---- the preview ---------------------------------------------------------
  function formValues(form) {
    const values = {};
    new FormData(form).forEach((v, k) => { values[k] = String(v); });
    return values;
  }

  function item(text, cls) {
    const li = document.createElement("li");
    li.textContent = text;
    if (cls) li.className = cls;
    return li;
  }

  async function wallTimes(spec, times) {
    const words = await api("specs/describe", { spec: spec, at: times });
    return words.ok ? words.body : { description: [], times: [] };
  }

  function renderTimes(list, times, walls) {
    list.replaceChildren();
    times.forEach((t, i) => {
      const wall = walls.times[i] || {};
      const li = item(t + (wall.local ? "  ·  " + wall.local : ""), wall.dst ? "dst" : "");
      if (wall.dst) {
        li.title = wall.dst;
        li.append(document.createTextNode("  ⚠ " + wall.dst));
      }
      list.append(li);
    });
    if (!times.length) list.append(item("No fire times ahead.", "dim"));
  }

  function renderDiff(form, original, now) {
    const box = document.getElementById("preview-diff");
    if (!box || !original) return;
    const horizon = (a) => (a.length ? a[a.length - 1] : "");
    const added = now.filter((t) => !original.includes(t) && t <= horizon(original));
    const removed = original.filter((t) => !now.includes(t) && t <= horizon(now));
    const addList = document.getElementById("preview-added");
    const removedList = document.getElementById("preview-removed");
    addList.replaceChildren(...added.map((t) => item(t + " appears")));
    removedList.replaceChildren(...removed.map((t) => item(t + " disappears")));
    box.hidden = !(added.length || removed.length);
  }

  function setupEditor(form) {
    const list = document.getElementById("preview-times");
    const words = document.getElementById("spec-words");
    const note = document.getElementById("preview-note");
    const after = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    let original = null;
    let asked = 0;

    // the schedule's id gives the jitter its actual times (without one, actual = nominal)
    const idField = form.querySelector('[name="id"]');
    function scheduleId() {
      const typed = idField ? idField.value.trim() : form.dataset.scheduleId || "";
      return /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(typed) ? typed : undefined;
    }

    async function timesOf(spec) {
      const body = { spec: spec, count: 10, after: after, schedule_id: scheduleId() };
      return api("specs/preview", body);
    }

    if (form.dataset.originalSpec) {
      const saved = specFrom(JSON.parse(form.dataset.originalSpec));
      timesOf(saved).then((a) => { if (a.ok) original = a.body.times.map((t) => t.actual); update(); });
    }

    async function update() {
      const spec = specFrom(formValues(form));
      const ticket = ++asked;
      if (!spec.cron.length && !spec.intervals.length) {
        list.replaceChildren(item("Give a cron expression or an interval.", "dim"));
        words.textContent = "";
        return;
      }
      note.textContent = "Updating…";
      const answer = await timesOf(spec);
      if (ticket !== asked) return;
      SPEC_FIELDS.forEach((f) => showError(form, f, ""));
      if (!answer.ok) {
        const errors = (answer.body && answer.body.errors) || [];
        errors.forEach((e) => showError(form, fieldOf(e.field), e.message));
        if (!errors.length) note.textContent = (answer.body && answer.body.detail) || "Preview failed.";
        else note.textContent = "Fix the fields marked in red.";
        list.replaceChildren();
        words.textContent = "";
        return;
      }
      const times = answer.body.times.map((t) => t.actual);
      const walls = await wallTimes(spec, times);
      if (ticket !== asked) return;
      words.textContent = walls.description.join("; ");
      renderTimes(list, times, walls);
      renderDiff(form, original, times);
      note.textContent = "Times in UTC, then on the schedule's wall clock; ⚠ marks DST.";
    }

    const later = debounce(update, 250);
    if (idField) idField.addEventListener("input", later);
    SPEC_FIELDS.forEach((name) => {
      const field = form.querySelector('[name="' + name + '"]');
      if (field) field.addEventListener("input", later);
    });
    form.querySelectorAll("button.preset").forEach((button) => {
      button.addEventListener("click", () => {
        const cron = form.querySelector('[name="cron"]');
        cron.value = button.dataset.cron;
        cron.focus();
        update();
      });
    });
    const input = form.querySelector('[name="input"]');
    const workflow = form.querySelector('[name="workflow_id"]');
    const check = debounce(() => checkInput(form), 200);
    if (input) input.addEventListener("input", check);
    if (workflow) workflow.addEventListener("change", check);
    update();
    if (input && input.value.trim()) checkInput(form);
  }

  // ---- live updates from the event stream ------------------------------------
  const EVENT_TYPES = [
    "ScheduleCreated", "ScheduleUpdated", "SchedulePaused", "ScheduleResumed", "ScheduleDeleted",
    "ScheduleCompleted", "ScheduleFired", "FireSkipped", "FireDropped", "FiresMissed",
    "RunQueued", "RunStarted", "RunSucceeded", "RunAttemptFailed", "RunFailed", "RunTimedOut",
    "RunCancelled", "RunDeadLettered",
  ];

  function busy(main) {
    const active = document.activeElement;
    if (active && main.contains(active) && active.matches("input, select, textarea")) return true;
    return Array.from(main.querySelectorAll("input.note")).some((i) => i.value);
  }

  function setupLive(main) {
    if (!window.EventSource) return;
    const status = document.getElementById("live-status");
    const url = "/console/v1/events/stream?after=" + encodeURIComponent(main.dataset.live);
    const source = new EventSource(url);
    let refreshing = false;
    let again = false;

    async function refresh() {
      if (refreshing) { again = true; return; }
      if (busy(main)) { setTimeout(refresh, 1000); return; }
      refreshing = true;
      try {
        const response = await fetch(location.href, { credentials: "same-origin" });
        if (response.ok) {
          const doc = new DOMParser().parseFromString(await response.text(), "text/html");
          const fresh = doc.getElementById("main");
          if (fresh && !busy(main)) {
            main.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.importNode(n, true)));
          }
        }
      } finally {
        refreshing = false;
        if (again) { again = false; setTimeout(refresh, 300); }
      }
    }

    const soon = debounce(refresh, 400);
    EVENT_TYPES.forEach((type) => source.addEventListener(type, soon));
    source.onopen = () => { if (status) status.textContent = "live"; };
    source.onerror = () => { if (status) status.textContent = "reconnecting…"; };
  }

  document.addEventListener("DOMContentLoaded", () => {
    const editor = document.getElementById("editor");
    if (editor) setupEditor(editor);
    const main = document.getElementById("main");
    if (main && main.dataset.live) setupLive(main);
  });
})();
