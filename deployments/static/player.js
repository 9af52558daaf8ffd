// The media-ray player page: streams, playback with brand boxes drawn by presentation time,
// a per-brand exposure tally, and the browser's camera as a source. It speaks only the app's
// HTTP/WebSocket API on its own origin.
//
// The API needs its token: the page trades it once for an HttpOnly session cookie (POST
// /api/session), which every fetch, the HLS player and the WebSockets then carry. The token
// comes from the sign-in form the page shows when the API answers 401, or from the URL
// fragment (`http://HOST:PORT/#token=...`, as `media-ray serve` prints it), which is then cleared.
//
// window.mediaRay mirrors what the page shows (for tests and for the curious console user);
// it is rewritten at every draw.
"use strict";

const STATUS_POLL_MS = 2000;
const REPORT_POLL_MS = 2000;
const CAMERA_FPS = 3;
const CAMERA_JPEG_QUALITY = 0.8;
const CAMERA_MAX_WIDTH = 640;
// a camera frame is not sent while this much is still waiting on the socket
const CAMERA_MAX_BUFFERED = 1 << 20;
// a record's boxes stay up for this many analysis intervals, then it is stale
const HOLD_INTERVALS = 1.5;
const DEFAULT_FPS = 2;
const DETECTIONS_SHOWN = 50;
// records kept for the selected stream (two hours at 5 frames/s); the oldest go first
const RECORDS_KEPT = 36000;
// media time and record times are both rounded; a frame at t must count as "at or after t"
const TIME_EPSILON = 1e-3;

const $ = (id) => document.getElementById(id);

// The stream states, as the API's OpenAPI schema lists them (its StreamState enum): filled
// at start, before any stream is shown; STATES.ENDED is "ended", and so on.
const STATES = {};

async function loadStates() {
  const schema = await (await fetch("/openapi.json")).json();
  for (const value of schema.components.schemas.StreamState.enum) STATES[value.toUpperCase()] = value;
  mediaRay.states = Object.values(STATES);
}

const mediaRay = {
  selected: null,      // id of the stream being played
  state: null,         // its state
  playback: null,      // "hls.js" | "native" | null
  currentTime: 0,      // media time of the last drawn frame (seconds; records' t scale)
  drawnBoxes: [],      // [{label, score, box, t}] drawn over that frame, box in source pixels
  sourceSize: null,    // [width, height] of the analysed frames, from the stream's status
  states: [],          // the stream states the API's schema names
  records: 0,          // frame records received for the selected stream
  lastRecordT: null,
  draws: 0,
  webcam: { id: null, active: false, sent: 0, skipped: 0, received: 0, drawnBoxes: [], frameSize: null },
  errors: [],
  needsToken: false,   // the API answered 401: the sign-in form is shown
  signedIn: false,     // the API answered a call that needs the token
  reconnects: 0,       // times the follow socket of the selected stream was opened again
};
window.mediaRay = mediaRay;

// ---- API ------------------------------------------------------------------------------------

async function request(method, path, body) {
  const init = { method, headers: {} };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401) askForToken();
  else if (response.ok && path !== "/api/session") signedIn();
  if (!response.ok) {
    const detail = data && data.detail ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : response.statusText;
    const error = new Error(`${method} ${path}: ${detail}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function socketUrl(path) {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${path}`;
}

// ---- signing in ------------------------------------------------------------------------------

function askForToken() {
  if (mediaRay.needsToken) return;
  mediaRay.needsToken = true;
  mediaRay.signedIn = false;
  $("sign-in").hidden = false;
  $("sign-out").hidden = true;
  notify("this server needs its API token");
}

function signedIn() {
  if (mediaRay.signedIn) return;
  mediaRay.signedIn = true;
  mediaRay.needsToken = false;
  $("sign-in").hidden = true;
  $("sign-out").hidden = false;
}

/** Trade the token for the session cookie; true if the server took it. */
async function openSession(token) {
  try {
    await request("POST", "/api/session", { token });
  } catch (error) {
    notify(error.status === 401 ? "wrong token" : error.message);
    return false;
  }
  notify("");
  mediaRay.needsToken = false;
  $("sign-in").hidden = true;
  return true;
}

/** A token in the URL fragment (#token=...) is used once and removed from the address bar. */
async function tokenFromFragment() {
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
  const token = fragment.get("token");
  if (!token) return;
  history.replaceState(null, "", location.pathname + location.search);
  await openSession(token);
}

$("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  if (await openSession(new FormData(form).get("token"))) {
    form.reset();
    refreshBrands();
    refreshStreams();
  }
});

$("sign-out").addEventListener("click", async () => {
  await request("DELETE", "/api/session").catch(() => {});
  mediaRay.signedIn = false;
  leave();
  statuses = [];
  renderStreams();
  askForToken();
});

/** What a closed WebSocket's code says: a sign-in is needed, the stream is full. */
function socketRefused(event) {
  if (event.code === 4401) askForToken();
  else if (event.code === 4429) notify(event.reason || "this stream has as many viewers as it may have");
  return event.code === 4401 || event.code === 4429;
}

function notify(message) {
  $("notice").textContent = message || "";
  if (message) {
    mediaRay.errors.push(message);
    if (mediaRay.errors.length > 20) mediaRay.errors.shift();
  }
}

// ---- frame records ---------------------------------------------------------------------------

/** Frame records of one stream, kept in time order; a replayed record replaces its twin. */
class RecordTimeline {
  constructor() { this.items = []; }

  get length() { return this.items.length; }
  get last() { return this.items[this.items.length - 1]; }

  add(record) {
    const items = this.items;
    if (!items.length || record.t > items[items.length - 1].t) {
      items.push(record);
      if (items.length > RECORDS_KEPT) items.splice(0, items.length - RECORDS_KEPT);
      return true;
    }
    const i = this.indexAtOrBefore(record.t);
    if (i >= 0 && Math.abs(items[i].t - record.t) < 1e-6) {
      items[i] = record;
      return false;
    }
    items.splice(i + 1, 0, record);
    return true;
  }

  /** Index of the latest record with t <= time, or -1. */
  indexAtOrBefore(time) {
    let lo = 0, hi = this.items.length - 1, found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.items[mid].t <= time) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
    }
    return found;
  }

  /** The record whose boxes belong on the frame shown at `time`: the latest one at or before
   * it, unless it is older than `hold` seconds (its logo may be gone since). */
  at(time, hold) {
    const i = this.indexAtOrBefore(time + TIME_EPSILON);
    if (i < 0) return null;
    const record = this.items[i];
    return time - record.t < hold ? record : null;
  }

  /** Median spacing of recent records: the analysis rate when the status does not say. */
  interval() {
    const items = this.items.slice(-20);
    if (items.length < 3) return null;
    const gaps = items.slice(1).map((r, i) => r.t - items[i].t).filter((g) => g > 0).sort((a, b) => a - b);
    return gaps.length ? gaps[gaps.length >> 1] : null;
  }
}

// ---- drawing ---------------------------------------------------------------------------------

const brandsById = new Map();

function brandColour(label) {
  const brand = brandsById.get(label);
  if (brand && brand.hex) return `#${brand.hex}`;
  let h = 0;  // a stable colour for labels outside the catalogue
  for (const c of label) h = (h * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${h}, 85%, 50%)`;
}

function brandName(label) {
  const brand = brandsById.get(label);
  return brand ? brand.name : label;
}

/** Where the video's picture lies inside its element (object-fit: contain), in CSS pixels. */
function pictureRect(video) {
  const cw = video.clientWidth, ch = video.clientHeight;
  const vw = video.videoWidth, vh = video.videoHeight;
  if (!vw || !vh || !cw || !ch) return null;
  const scale = Math.min(cw / vw, ch / vh);
  return { x: (cw - vw * scale) / 2, y: (ch - vh * scale) / 2, w: vw * scale, h: vh * scale, cw, ch };
}

/** Clear the overlay and draw `detections` (boxes in a `sourceSize` picture) over the video.
 * Returns what was drawn. */
function drawBoxes(canvas, video, detections, sourceSize, t) {
  const rect = pictureRect(video);
  const ratio = window.devicePixelRatio || 1;
  const width = Math.round((rect ? rect.cw : canvas.clientWidth) * ratio);
  const height = Math.round((rect ? rect.ch : canvas.clientHeight) * ratio);
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const drawn = [];
  if (!rect || !detections) return drawn;
  const [sw, sh] = sourceSize && sourceSize[0] ? sourceSize : [video.videoWidth, video.videoHeight];
  const sx = rect.w / sw, sy = rect.h / sh;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.lineWidth = 3;
  ctx.font = "bold 13px system-ui, sans-serif";
  ctx.textBaseline = "bottom";
  for (const d of detections) {
    if (!d.box) continue;
    const [x0, y0, x1, y1] = d.box;
    const x = rect.x + x0 * sx, y = rect.y + y0 * sy, w = (x1 - x0) * sx, h = (y1 - y0) * sy;
    const colour = brandColour(d.label);
    ctx.strokeStyle = colour;
    ctx.strokeRect(x, y, w, h);
    const text = `${brandName(d.label)} ${d.score.toFixed(2)}`;
    const tw = ctx.measureText(text).width + 8;
    const ty = y > 18 ? y : y + 18;
    ctx.fillStyle = colour;
    ctx.fillRect(x - 1.5, ty - 18, tw, 18);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 3, ty - 3);
    drawn.push({ label: d.label, score: d.score, box: d.box, t });
  }
  return drawn;
}

/** Call `draw(mediaTime)` for every frame the video paints, and after seeks and resizes. */
function followFrames(video, draw) {
  let stopped = false;
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
    const onFrame = (_now, meta) => {
      if (stopped) return;
      draw(meta.mediaTime);
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  } else {
    const onTick = () => {
      if (stopped) return;
      draw(video.currentTime);
      requestAnimationFrame(onTick);
    };
    requestAnimationFrame(onTick);
  }
  // a paused video paints no frames; keep the overlay true to what is on screen
  const redraw = () => { if (!stopped) draw(video.currentTime); };
  for (const event of ["seeked", "pause", "loadedmetadata"]) video.addEventListener(event, redraw);
  window.addEventListener("resize", redraw);
  return {
    redraw,
    stop() {
      stopped = true;
      for (const event of ["seeked", "pause", "loadedmetadata"]) video.removeEventListener(event, redraw);
      window.removeEventListener("resize", redraw);
    },
  };
}

// ---- the selected stream -----------------------------------------------------------------------

const video = $("video");
const overlay = $("overlay");
let statuses = [];
let current = null;  // {id, status, timeline, hls, socket, frames, reportTimer, hlsUrl}

function select(id) {
  if (current && current.id === id) return;
  leave();
  const status = statuses.find((s) => s.id === id) || null;
  current = { id, status, timeline: new RecordTimeline(), hls: null, socket: null, frames: null, reportTimer: null,
              hlsUrl: null, cursor: null };
  mediaRay.selected = id;
  mediaRay.records = 0;
  mediaRay.lastRecordT = null;
  $("detections").replaceChildren();
  showExposure(null);
  showStatus(status);
  renderStreams();
  current.frames = followFrames(video, drawCurrent);
  follow(current);
  attachPlayback(current);
  refreshReport(current);
  current.reportTimer = setInterval(() => refreshReport(current), REPORT_POLL_MS);
}

function leave() {
  if (!current) return;
  const c = current;
  current = null;
  clearInterval(c.reportTimer);
  if (c.frames) c.frames.stop();
  if (c.socket) { c.socket.onclose = null; c.socket.close(); }
  if (c.hls) c.hls.destroy();
  video.removeAttribute("src");
  video.load();
  drawBoxes(overlay, video, [], null, 0);
  Object.assign(mediaRay, { selected: null, state: null, playback: null, drawnBoxes: [], records: 0, lastRecordT: null });
}

function drawCurrent(time) {
  if (!current) return;
  const fps = (current.status && current.status.fps) || null;
  const interval = fps ? 1 / fps : current.timeline.interval() || 1 / DEFAULT_FPS;
  const record = current.timeline.at(time, HOLD_INTERVALS * interval);
  // boxes are in the pixels of the analysed frames, which the stream's status gives
  const st = current.status;
  const size = st && st.frame_width && st.frame_height ? [st.frame_width, st.frame_height] : null;
  mediaRay.sourceSize = size;
  mediaRay.drawnBoxes = drawBoxes(overlay, video, record ? record.detections : [], size, record ? record.t : null);
  mediaRay.currentTime = time;
  mediaRay.draws += 1;
}

/** Frame records over the stream's WebSocket: a replay of what is kept, then each new one; a
 * socket opened again resumes after the cursor of the last record received (`?after=`). */
function follow(c) {
  const after = c.cursor ? `?after=${encodeURIComponent(c.cursor)}` : "";
  const socket = new WebSocket(socketUrl(`/ws/streams/${encodeURIComponent(c.id)}${after}`));
  c.socket = socket;
  socket.onmessage = (event) => {
    if (current !== c) return;
    const record = JSON.parse(event.data);
    if (record.cursor) c.cursor = record.cursor;
    if (c.timeline.add(record) && record.detections.length) listDetections(record);
    mediaRay.records = c.timeline.length;
    mediaRay.lastRecordT = c.timeline.last.t;
    if (video.paused) c.frames.redraw();
  };
  socket.onclose = (event) => {
    if (event.code === 4400) c.cursor = null;  // a cursor the store no longer has: replay what is kept
    const delay = socketRefused(event) ? 5000 : 1000;
    if (current === c && !isFinished(c.status)) {
      setTimeout(() => { if (current === c) { mediaRay.reconnects += 1; follow(c); } }, delay);
    }
  };
}

function isFinished(status) {
  return Boolean(status) && (status.state === STATES.ENDED || status.state === STATES.FAILED);
}

function listDetections(record) {
  const list = $("detections");
  for (const d of record.detections) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.display = "inline-block";
    swatch.style.background = brandColour(d.label);
    const box = d.box ? ` [${d.box.map((v) => Math.round(v)).join(", ")}]` : "";
    item.append(swatch, ` ${record.t.toFixed(2)} s  ${brandName(d.label)}  ${d.score.toFixed(2)}${box}`);
    list.prepend(item);
  }
  while (list.children.length > DETECTIONS_SHOWN) list.lastChild.remove();
}

/** Play the stream's HLS: hls.js where the browser has Media Source Extensions, else natively. */
function attachPlayback(c) {
  const url = c.status && c.status.hls_url;
  if (!url || c.hlsUrl === url) {
    if (!url) $("playback-note").textContent = "No video yet for this stream.";
    return;
  }
  c.hlsUrl = url;
  $("playback-note").textContent = "";
  if (window.Hls && window.Hls.isSupported()) {
    const hls = new window.Hls({
      // a live playlist appears only once the first segments are written: keep asking
      manifestLoadPolicy: {
        default: {
          maxTimeToFirstByteMs: 10000,
          maxLoadTimeMs: 20000,
          timeoutRetry: { maxNumRetry: 4, retryDelayMs: 500, maxRetryDelayMs: 2000 },
          errorRetry: { maxNumRetry: 60, retryDelayMs: 1000, maxRetryDelayMs: 2000 },
        },
      },
    });
    hls.on(window.Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal || current !== c) return;
      if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else {
        // a live playlist is not there until its first segments are: not worth an alarm
        $("playback-note").textContent = `Waiting for video (${data.details})…`;
        setTimeout(() => { if (current === c) { hls.loadSource(url); hls.startLoad(); } }, 2000);
      }
    });
    hls.on(window.Hls.Events.MANIFEST_PARSED, () => { if (current === c) $("playback-note").textContent = ""; });
    hls.loadSource(url);
    hls.attachMedia(video);
    c.hls = hls;
    mediaRay.playback = "hls.js";
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url;
    video.onerror = () => {
      if (current !== c) return;
      setTimeout(() => { if (current === c) { video.src = url; video.play().catch(() => {}); } }, 2000);
    };
    mediaRay.playback = "native";
  } else {
    $("playback-note").textContent = "This browser cannot play HLS, and hls.js is not installed (deployments/static/vendor.sh).";
    return;
  }
  video.muted = true;
  video.play().catch(() => {});  // autoplay may wait for a gesture; the controls remain
}

async function refreshReport(c) {
  try {
    const report = await request("GET", `/api/streams/${encodeURIComponent(c.id)}/report`);
    if (current === c) showExposure(report);
  } catch (error) {
    if (error.status !== 404) notify(error.message);
  }
}

function showExposure(report) {
  const body = $("exposure").tBodies[0];
  const rows = [];
  const brands = report ? Object.entries(report.brands || {}) : [];
  brands.sort((a, b) => b[1].exposure_s - a[1].exposure_s);
  for (const [id, b] of brands) {
    const row = document.createElement("tr");
    row.dataset.brand = id;
    const name = document.createElement("td");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.display = "inline-block";
    swatch.style.background = brandColour(id);
    name.append(swatch, ` ${b.name || brandName(id)}`);
    const cells = [
      (b.exposure_s || 0).toFixed(1),
      String((b.appearances || []).length),
      b.mean_score != null ? b.mean_score.toFixed(2) : "–",
      b.max_share != null ? `${(100 * b.max_share).toFixed(1)} %` : "–",
    ].map((text) => { const td = document.createElement("td"); td.textContent = text; return td; });
    row.append(name, ...cells);
    rows.push(row);
  }
  body.replaceChildren(...rows);
  $("exposure-empty").hidden = rows.length > 0;
}

function showStatus(status) {
  $("stream-title").textContent = status ? status.name || status.id : "Select a stream";
  $("player").classList.toggle("idle", !status);
  $("st-state").textContent = status ? status.state + (status.reason ? ` (${status.reason})` : "") : "–";
  let tier = "–";
  if (status) {
    tier = status.tier || "–";
    if (status.fallback || (status.tier_requested && status.tier_requested !== status.tier)) {
      tier += ` (fallback from ${status.tier_requested || "the requested tier"})`;
    }
  }
  $("st-tier").textContent = tier;
  $("st-received").textContent = status ? String(status.frames_received) : "–";
  $("st-analysed").textContent = status ? String(status.frames_analysed) : "–";
  $("st-dropped").textContent = status ? String(status.frames_dropped) : "–";
  $("st-publish").hidden = !(status && status.publish_url);
  $("st-publish-url").textContent = status && status.publish_url ? status.publish_url : "";
  mediaRay.state = status ? status.state : null;
}

// ---- the stream list -----------------------------------------------------------------------

async function refreshStreams() {
  try {
    statuses = await request("GET", "/api/streams");
  } catch (error) {
    notify(error.message);
    return;
  }
  renderStreams();
  if (current) {
    current.status = statuses.find((s) => s.id === current.id) || current.status;
    showStatus(current.status);
    attachPlayback(current);  // an RTMP stream has video only once someone publishes
  }
}

function renderStreams() {
  const items = statuses.map((s) => {
    const item = document.createElement("li");
    item.dataset.id = s.id;
    item.dataset.state = s.state;
    if (current && current.id === s.id) item.className = "selected";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = s.name || s.id;
    name.title = s.source;
    const state = document.createElement("span");
    state.className = `state state-${s.state}`;
    state.textContent = s.state;
    const remove = document.createElement("button");
    remove.className = "remove";
    remove.type = "button";
    remove.title = "remove this stream and its results";
    remove.textContent = "×";
    remove.addEventListener("click", async (event) => {
      event.stopPropagation();
      if (current && current.id === s.id) leave();
      try { await request("DELETE", `/api/streams/${encodeURIComponent(s.id)}`); } catch (error) { notify(error.message); }
      refreshStreams();
    });
    item.append(name, state, remove);
    item.addEventListener("click", () => select(s.id));
    return item;
  });
  $("streams").replaceChildren(...items);
  $("streams-empty").hidden = items.length > 0;
}

$("add-stream").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { source: form.get("source").trim() };
  if (form.get("name")) body.name = form.get("name").trim();
  if (form.get("tier")) body.tier = form.get("tier");
  if (form.get("fps")) body.fps = Number(form.get("fps"));
  try {
    const status = await request("POST", "/api/streams", body);
    // the key is told once, to its creator: the list shows the server URL only
    notify(status.publish_url_with_key ? `publish to ${status.publish_url_with_key} (the key is shown only now)` : "");
    event.target.reset();
    statuses = statuses.filter((s) => s.id !== status.id).concat([status]);
    select(status.id);
  } catch (error) {
    notify(error.message);
  }
});

// ---- brands ----------------------------------------------------------------------------------

async function refreshBrands() {
  let brands;
  try {
    brands = await request("GET", "/api/brands");
  } catch (error) {
    notify(error.message);
    return;
  }
  brandsById.clear();
  for (const b of brands) brandsById.set(b.id, b);
  const items = brands.map((b) => {
    const item = document.createElement("li");
    item.dataset.id = b.id;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = brandColour(b.id);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = b.name === b.id ? b.id : `${b.name} (${b.id})`;
    name.title = (b.prompts || []).join(", ");
    const remove = document.createElement("button");
    remove.className = "remove";
    remove.type = "button";
    remove.title = "remove from the catalogue";
    remove.textContent = "×";
    remove.addEventListener("click", async () => {
      try { await request("DELETE", `/api/brands/${encodeURIComponent(b.id)}`); } catch (error) { notify(error.message); }
      refreshBrands();
    });
    item.append(swatch, name, remove);
    return item;
  });
  $("brands").replaceChildren(...items);
}

$("add-brand").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const image = form.get("image");
  if (!image || !image.size) form.delete("image");
  try {
    await request("POST", "/api/brands", form);
    notify("");
    event.target.reset();
  } catch (error) {
    notify(error.message);
  }
  refreshBrands();
});

// ---- the camera ------------------------------------------------------------------------------

const cameraVideo = $("camera-video");
const cameraOverlay = $("camera-overlay");
let camera = null;  // {id, media, upload, results, timer, frames, latest, latestAt, grab, encoding}

async function startCamera() {
  const button = $("camera-button");
  button.disabled = true;
  try {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 } }, audio: false });
    const status = await request("POST", "/api/streams", { source: "webcam", name: "my camera" });
    camera = { id: status.id, media, upload: null, results: null, timer: null, frames: null,
               latest: null, latestAt: 0, grab: document.createElement("canvas"), encoding: false };
    Object.assign(mediaRay.webcam, { id: status.id, active: true, sent: 0, skipped: 0, received: 0, drawnBoxes: [], frameSize: null });
    $("camera").hidden = false;
    cameraVideo.srcObject = media;
    await cameraVideo.play().catch(() => {});
    // the stream's own push key, from its create response
    const key = encodeURIComponent(status.push_key || "");
    camera.upload = new WebSocket(socketUrl(`/ws/webcam/${encodeURIComponent(status.id)}?key=${key}`));
    camera.upload.binaryType = "arraybuffer";
    camera.upload.onclose = (event) => {
      if (camera && camera.id === status.id) {
        $("camera-status").textContent = `upload closed${event.reason ? `: ${event.reason}` : ""}`;
      }
    };
    followCameraResults(camera);
    camera.frames = followFrames(cameraVideo, drawCamera);
    camera.timer = setInterval(sendCameraFrame, 1000 / CAMERA_FPS);
    button.textContent = "Stop my camera";
    // its status, detections and tally are shown like any stream's (and its video, if the
    // app writes one, plays with the boxes by presentation time)
    statuses = statuses.filter((s) => s.id !== status.id).concat([status]);
    select(status.id);
  } catch (error) {
    notify(`camera: ${error.message || error.name}`);
    stopCamera();
  } finally {
    button.disabled = false;
  }
}

function followCameraResults(cam) {
  const after = cam.cursor ? `?after=${encodeURIComponent(cam.cursor)}` : "";
  const socket = new WebSocket(socketUrl(`/ws/streams/${encodeURIComponent(cam.id)}${after}`));
  cam.results = socket;
  socket.onmessage = (event) => {
    if (camera !== cam) return;
    cam.latest = JSON.parse(event.data);
    if (cam.latest.cursor) cam.cursor = cam.latest.cursor;
    cam.latestAt = performance.now();
    mediaRay.webcam.received += 1;
  };
  socket.onclose = (event) => {
    if (event.code === 4400) cam.cursor = null;
    const delay = socketRefused(event) ? 5000 : 1000;
    if (camera === cam) setTimeout(() => { if (camera === cam) followCameraResults(cam); }, delay);
  };
}

/** Grab the camera's current picture as a JPEG and send it, unless the link is still busy. */
function sendCameraFrame() {
  const cam = camera;
  if (!cam || !cam.upload || cam.upload.readyState !== WebSocket.OPEN || !cameraVideo.videoWidth) return;
  if (cam.encoding || cam.upload.bufferedAmount > CAMERA_MAX_BUFFERED) {
    mediaRay.webcam.skipped += 1;
    return;
  }
  const scale = Math.min(1, CAMERA_MAX_WIDTH / cameraVideo.videoWidth);
  const w = Math.round(cameraVideo.videoWidth * scale), h = Math.round(cameraVideo.videoHeight * scale);
  cam.grab.width = w;
  cam.grab.height = h;
  cam.grab.getContext("2d").drawImage(cameraVideo, 0, 0, w, h);
  cam.encoding = true;
  cam.grab.toBlob((blob) => {
    cam.encoding = false;
    if (camera !== cam || !blob || cam.upload.readyState !== WebSocket.OPEN) return;
    cam.upload.send(blob);
    cam.frameSize = [w, h];
    mediaRay.webcam.frameSize = [w, h];
    mediaRay.webcam.sent += 1;
  }, "image/jpeg", CAMERA_JPEG_QUALITY);
}

/** The camera is shown as it is captured; the boxes of the newest result stay over it until
 * the next result replaces them, or for a short hold if none comes. */
function drawCamera() {
  const cam = camera;
  if (!cam) return;
  const hold = (HOLD_INTERVALS / CAMERA_FPS) * 1000 + 500;
  const fresh = cam.latest && performance.now() - cam.latestAt < hold;
  mediaRay.webcam.drawnBoxes = drawBoxes(cameraOverlay, cameraVideo, fresh ? cam.latest.detections : [],
    cam.frameSize, fresh ? cam.latest.t : null);
  mediaRay.draws += 1;
  $("camera-status").textContent = `${mediaRay.webcam.sent} frames sent, ${mediaRay.webcam.received} results back`;
}

function stopCamera() {
  const cam = camera;
  camera = null;
  const button = $("camera-button");
  button.textContent = "Use my camera";
  mediaRay.webcam.active = false;
  if (!cam) return;
  clearInterval(cam.timer);
  if (cam.frames) cam.frames.stop();
  if (cam.upload) { cam.upload.onclose = null; cam.upload.close(); }
  if (cam.results) { cam.results.onclose = null; cam.results.close(); }
  for (const track of cam.media.getTracks()) track.stop();
  cameraVideo.srcObject = null;
  drawBoxes(cameraOverlay, cameraVideo, [], null, null);
  mediaRay.webcam.drawnBoxes = [];
  $("camera").hidden = true;
  refreshStreams();
}

$("camera-button").addEventListener("click", () => (camera ? stopCamera() : startCamera()));

// ---- start -----------------------------------------------------------------------------------

tokenFromFragment()
  .then(loadStates)
  .catch((error) => mediaRay.errors.push(`stream states: ${error.message}`))
  .then(() => {
    refreshBrands();
    refreshStreams();
    setInterval(refreshStreams, STATUS_POLL_MS);
  });
