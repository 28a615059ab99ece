// mosaicdb viewer: the Deep Zoom pyramid of a render in OpenSeadragon, and which photo fills
// each cell. The data (window.MOSAICDB_VIEW, from data.js) is described in mosaicdb/view/viewer.py.
//
// Rules kept here: catalog text (names, folders) only ever goes into the page through
// textContent, never as HTML; there is no DOM node per cell (the cell under the pointer is
// computed from the pointer position, highlights are drawn on one canvas).
(function () {
  "use strict";

  const api = (window.mosaicdbViewer = {
    ready: false,
    timings: { script: performance.now() },
    // lookup: the handler's own time; toFrame: pointer event → the next frame with the panel
    // updated (input queueing included)
    lookups: {
      count: 0,
      first: null,
      last: null,
      max: 0,
      toFrameFirst: null,
      toFrameMax: 0,
      handler: [], // the last 1000 of each, for medians
      toFrame: [],
    },
  });
  const $ = (id) => document.getElementById(id);

  // 12,345 (toLocaleString would load the Intl data first: ~50 ms before the first paint)
  function num(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function setText(id, text) {
    $(id).textContent = text == null ? "" : String(text);
  }

  function fail(message) {
    const el = $("error");
    el.textContent = message;
    el.hidden = false;
    api.error = message;
  }

  const D = window.MOSAICDB_VIEW;
  if (!D) {
    fail("The data of this view (data.js) did not load.");
    return;
  }
  if (typeof window.OpenSeadragon !== "function") {
    fail("OpenSeadragon (openseadragon/openseadragon.min.js) did not load.");
    return;
  }
  const OSD = window.OpenSeadragon;

  // -- data ---------------------------------------------------------------------------------
  function bytesOf(b64) {
    if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(b64);
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  const G = D.grid;
  const nCells = G.cols * G.rows;
  const planBytes = bytesOf(D.plan.base64);
  const plan =
    D.plan.bytes_per_cell === 2
      ? new Uint16Array(planBytes.buffer, 0, nCells)
      : new Uint32Array(planBytes.buffer, 0, nCells);
  const deCodes = D.delta_e ? bytesOf(D.delta_e.base64) : null;
  const P = D.photos;
  const nPhotos = P.id.length;
  const uses = new Uint32Array(nPhotos);
  for (let i = 0; i < nCells; i++) uses[plan[i]]++;
  api.timings.data = performance.now();

  // -- header and notes ---------------------------------------------------------------------
  const R = D.render;
  setText("title", "Render " + R.id);
  const meanDe = D.delta_e && D.delta_e.mean != null ? D.delta_e.mean : R.mean_delta_e;
  setText(
    "subtitle",
    G.cols + " × " + G.rows + " cells (" + num(nCells) + "), " +
      num(nPhotos) + " distinct photos, " +
      num(G.width) + " × " + num(G.height) + " px" +
      (meanDe != null ? ", mean ΔE2000 " + meanDe.toFixed(2) : "")
  );
  document.title = "Render " + R.id + " · mosaicdb";
  for (const note of D.notes || []) {
    const li = document.createElement("li");
    li.textContent = note;
    $("notes").appendChild(li);
  }

  // -- the viewer ---------------------------------------------------------------------------
  const viewer = OSD({
    element: $("viewer"),
    prefixUrl: "openseadragon/images/",
    drawer: "canvas",
    crossOriginPolicy: false,
    // our own buttons (below): OpenSeadragon's would fetch 20 images before the first tile
    showNavigationControl: false,
    showNavigator: false,
    maxZoomPixelRatio: 2,
    immediateRender: true,
    visibilityRatio: 0.5,
    gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
    gestureSettingsTouch: { clickToZoom: false, dblClickToZoom: true },
    tileSources: {
      Image: {
        xmlns: "http://schemas.microsoft.com/deepzoom/2008",
        Url: D.dzi.url,
        Format: D.dzi.format,
        Overlap: String(D.dzi.overlap),
        TileSize: String(D.dzi.tile_size),
        Size: { Width: String(G.width), Height: String(G.height) },
      },
    },
  });
  api.viewer = viewer;
  api.timings.viewer = performance.now();

  const zoomStep = 1.6;
  $("zoom-in").addEventListener("click", () => viewer.viewport.zoomBy(zoomStep).applyConstraints());
  $("zoom-out").addEventListener("click", () =>
    viewer.viewport.zoomBy(1 / zoomStep).applyConstraints()
  );
  $("zoom-home").addEventListener("click", () => viewer.viewport.goHome());
  // the whole stage (pyramid, highlights, buttons) goes full screen, not just OpenSeadragon's part
  $("zoom-full").addEventListener("click", function () {
    if (document.fullscreenElement) document.exitFullscreen();
    else if ($("stage").requestFullscreen) $("stage").requestFullscreen();
  });

  viewer.addHandler("open", function () {
    api.timings.open = performance.now();
    resizeMarks();
  });
  viewer.addHandler("open-failed", function (e) {
    fail("Cannot open the Deep Zoom pyramid: " + (e.message || "unknown error"));
  });
  viewer.addHandler("tile-loaded", function () {
    if (api.timings.firstTile == null) api.timings.firstTile = performance.now();
  });
  viewer.addHandler("update-viewport", function () {
    if (api.timings.firstFrame == null) api.timings.firstFrame = performance.now();
  });
  viewer.addHandler("open", function () {
    viewer.world.getItemAt(0).addHandler("fully-loaded-change", function (e) {
      if (e.fullyLoaded && api.timings.fullyLoaded == null) api.timings.fullyLoaded = performance.now();
    });
  });
  viewer.addHandler("tile-drawn", function () {
    if (api.timings.firstPaint == null) {
      api.timings.firstPaint = performance.now();
      api.ready = true;
    }
  });
  let tileErrorShown = false;
  viewer.addHandler("tile-load-failed", function (e) {
    if (!tileErrorShown && e.tiledImage === viewer.world.getItemAt(0)) {
      tileErrorShown = true;
      fail("Some tiles of the pyramid could not be loaded (" + (e.message || "error") + ").");
    }
  });

  function mosaicItem() {
    return viewer.world.getItemAt(0);
  }

  // Cell index under a point given in viewer-element pixels, or -1.
  function cellAt(x, y) {
    const item = mosaicItem();
    if (!item) return -1;
    const p = item.viewerElementToImageCoordinates(new OSD.Point(x, y));
    const c = Math.floor(p.x / G.cell_w);
    const r = Math.floor(p.y / G.cell_h);
    if (c < 0 || r < 0 || c >= G.cols || r >= G.rows) return -1;
    return r * G.cols + c;
  }

  // Centre of a cell in viewer-element pixels (for tests and the bench).
  function cellCentre(cell) {
    const item = mosaicItem();
    const r = Math.floor(cell / G.cols);
    const c = cell - r * G.cols;
    const p = item.imageToViewerElementCoordinates(
      new OSD.Point((c + 0.5) * G.cell_w, (r + 0.5) * G.cell_h)
    );
    return { x: p.x, y: p.y };
  }

  // -- the tile panel -----------------------------------------------------------------------
  function formatBytes(n) {
    if (n == null) return "";
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KB";
    return (n / 1024 / 1024).toFixed(1) + " MB";
  }

  function photoLink(i) {
    if (P.name[i] == null) return null;
    if (D.local && location.protocol.startsWith("http")) return "photo/" + i;
    if (location.protocol === "file:") {
      const folder = D.folders[P.folder[i]];
      if (folder && folder.uri.startsWith("file:///")) {
        return folder.uri.replace(/\/$/, "") + "/" + encodeURIComponent(P.name[i]);
      }
    }
    return null;
  }

  let shownCell = -2;
  function show(cell) {
    if (cell === shownCell) return;
    shownCell = cell;
    const info = $("cell-info");
    const link = $("cell-open");
    if (cell < 0) {
      info.hidden = true;
      $("cell-hint").hidden = false;
      link.hidden = true;
      return;
    }
    const i = plan[cell];
    const r = Math.floor(cell / G.cols);
    const c = cell - r * G.cols;
    const name = P.name[i];
    setText("cell-name", name == null ? "(photo #" + P.id[i] + " is no longer in the store)" : name);
    const folder = name == null ? null : D.folders[P.folder[i]];
    setText("cell-folder", folder ? folder.name : "");
    const size = [];
    if (P.width[i] != null) size.push(P.width[i] + " × " + P.height[i] + " px");
    if (P.bytes[i] != null) size.push(formatBytes(P.bytes[i]));
    if (P.format[i]) size.push(String(P.format[i]).toUpperCase());
    setText("cell-size", size.join(" · "));
    setText(
      "cell-pos",
      "row " + (r + 1) + " of " + G.rows + ", column " + (c + 1) + " of " + G.cols
    );
    let de;
    if (!deCodes) de = "n/a (the target is gone)";
    else if (deCodes[cell] === D.delta_e.none) de = "unknown";
    else de = (deCodes[cell] * D.delta_e.step).toFixed(1) + " against the target";
    setText("cell-de", de);
    setText("cell-uses", uses[i] === 1 ? "in this cell only" : "in " + num(uses[i]) + " cells");
    const href = photoLink(i);
    if (href) link.setAttribute("href", href);
    else link.removeAttribute("href");
    link.hidden = !href;
    info.hidden = false;
    $("cell-hint").hidden = true;
  }

  let hoverCell = -1;
  let pinnedCell = -1;
  const stage = $("viewer");

  function lookup(x, y, eventTime) {
    const t0 = performance.now();
    const cell = cellAt(x, y);
    hoverCell = cell;
    if (pinnedCell < 0) show(cell);
    const dt = performance.now() - t0;
    const L = api.lookups;
    L.count++;
    L.last = dt;
    if (L.first == null) L.first = dt;
    if (dt > L.max) L.max = dt;
    if (L.handler.push(dt) > 1000) L.handler.shift();
    if (eventTime != null) {
      requestAnimationFrame(function () {
        const f = performance.now() - eventTime;
        if (L.toFrameFirst == null) L.toFrameFirst = f;
        if (f > L.toFrameMax) L.toFrameMax = f;
        if (L.toFrame.push(f) > 1000) L.toFrame.shift();
      });
    }
    scheduleMarks();
    return cell;
  }

  // The stage's position, cached: asking for it on every move would force a layout of the
  // page (the panel text changed on the previous move) inside the handler.
  let stageRect = stage.getBoundingClientRect();
  function updateStageRect() {
    stageRect = stage.getBoundingClientRect();
  }
  // (fires after this script has run, when marks/ctx below exist; covers full screen too)
  new ResizeObserver(function () {
    updateStageRect();
    resizeMarks();
  }).observe(stage);
  window.addEventListener("scroll", updateStageRect, { passive: true });

  stage.addEventListener(
    "pointermove",
    function (e) {
      lookup(e.clientX - stageRect.left, e.clientY - stageRect.top, e.timeStamp);
    },
    { capture: true, passive: true }
  );
  stage.addEventListener("pointerleave", function () {
    hoverCell = -1;
    if (pinnedCell < 0) show(-1);
    scheduleMarks();
  });

  function pin(cell) {
    pinnedCell = cell;
    show(cell >= 0 ? cell : hoverCell);
    scheduleMarks();
  }

  viewer.addHandler("canvas-click", function (e) {
    if (!e.quick) return;
    const cell = cellAt(e.position.x, e.position.y);
    pin(cell === pinnedCell ? -1 : cell);
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") pin(-1);
  });

  // -- highlights, drawn on one canvas over the viewer ----------------------------------------
  const marks = $("marks");
  const ctx = marks.getContext("2d");
  let highlighted = new Uint32Array(0);
  let dpr = 1;
  let marksW = 0;
  let marksH = 0;

  function resizeMarks() {
    const rect = stage.getBoundingClientRect();
    dpr = window.devicePixelRatio || 1;
    marksW = rect.width;
    marksH = rect.height;
    marks.width = Math.max(1, Math.round(rect.width * dpr));
    marks.height = Math.max(1, Math.round(rect.height * dpr));
    marksDrawn = false; // resizing cleared it
    drawMarks();
  }

  let marksScheduled = false;
  function scheduleMarks() {
    if (marksScheduled) return;
    marksScheduled = true;
    requestAnimationFrame(drawMarks);
  }

  let marksDrawn = false; // the canvas has something on it
  function drawMarks() {
    marksScheduled = false;
    const item = mosaicItem();
    const want = item && (highlighted.length || hoverCell >= 0 || pinnedCell >= 0);
    // nothing to show and nothing shown: leave the canvas alone (no repaint of a full-size
    // layer on every frame while the pyramid loads)
    if (!want && !marksDrawn) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, marksW, marksH);
    marksDrawn = false;
    if (!want) return;
    marksDrawn = true;
    const o = item.imageToViewerElementCoordinates(new OSD.Point(0, 0));
    const e = item.imageToViewerElementCoordinates(new OSD.Point(G.width, G.height));
    const cw = ((e.x - o.x) / G.width) * G.cell_w;
    const ch = ((e.y - o.y) / G.height) * G.cell_h;
    const c0 = Math.floor(-o.x / cw) - 1;
    const c1 = Math.ceil((marksW - o.x) / cw);
    const r0 = Math.floor(-o.y / ch) - 1;
    const r1 = Math.ceil((marksH - o.y) / ch);
    const MIN = 5;

    function rect(cell) {
      const r = Math.floor(cell / G.cols);
      const c = cell - r * G.cols;
      if (c < c0 || c > c1 || r < r0 || r > r1) return null;
      let x = o.x + c * cw;
      let y = o.y + r * ch;
      let w = cw;
      let h = ch;
      if (w < MIN) {
        x -= (MIN - w) / 2;
        w = MIN;
      }
      if (h < MIN) {
        y -= (MIN - h) / 2;
        h = MIN;
      }
      return [x, y, w, h];
    }

    if (highlighted.length) {
      // a spotlight: everything dimmed but the cells found, which are outlined
      ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
      ctx.fillRect(0, 0, marksW, marksH);
      const boxes = [];
      for (let k = 0; k < highlighted.length; k++) {
        const b = rect(highlighted[k]);
        if (b) boxes.push(b);
      }
      for (const b of boxes) ctx.clearRect(b[0], b[1], b[2], b[3]);
      ctx.strokeStyle = "#00e5ff";
      ctx.lineWidth = 2;
      for (const b of boxes) ctx.strokeRect(b[0] + 1, b[1] + 1, b[2] - 2, b[3] - 2);
    }
    for (const [cell, colour] of [
      [hoverCell, "#ffffff"],
      [pinnedCell, "#ffd400"],
    ]) {
      if (cell < 0) continue;
      const b = rect(cell);
      if (!b) continue;
      ctx.lineWidth = 3;
      ctx.strokeStyle = "#000000";
      ctx.strokeRect(b[0], b[1], b[2], b[3]);
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = colour;
      ctx.strokeRect(b[0], b[1], b[2], b[3]);
    }
  }

  viewer.addHandler("update-viewport", drawMarks);

  // -- search -------------------------------------------------------------------------------
  let lowerNames = null;
  const input = $("search");
  const results = $("results");
  const MAX_RESULTS = 50;

  function highlightPhotos(match) {
    const cells = [];
    for (let i = 0; i < nCells; i++) if (match[plan[i]]) cells.push(i);
    highlighted = Uint32Array.from(cells);
    scheduleMarks();
    return cells.length;
  }

  function search(query) {
    const q = query.trim().toLowerCase();
    results.replaceChildren();
    if (!q) {
      highlighted = new Uint32Array(0);
      setText("search-status", "");
      scheduleMarks();
      return [];
    }
    if (!lowerNames) lowerNames = P.name.map((n) => (n == null ? "" : n.toLowerCase()));
    const match = new Uint8Array(nPhotos);
    const found = [];
    for (let i = 0; i < nPhotos; i++) {
      if (lowerNames[i].includes(q)) {
        match[i] = 1;
        found.push(i);
      }
    }
    const n = highlightPhotos(match);
    setText(
      "search-status",
      found.length === 0
        ? "No photo of this mosaic has that in its name."
        : num(found.length) + (found.length === 1 ? " photo" : " photos") +
            " in " + num(n) + (n === 1 ? " cell" : " cells") +
            (found.length > MAX_RESULTS ? " (the " + MAX_RESULTS + " most used listed)" : "")
    );
    found.sort((a, b) => uses[b] - uses[a] || a - b);
    for (const i of found.slice(0, MAX_RESULTS)) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      const name = document.createElement("span");
      name.textContent = P.name[i];
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = " — " + D.folders[P.folder[i]].name + " (×" + uses[i] + ")";
      button.append(name, meta);
      button.addEventListener("click", function () {
        selectPhoto(i, button);
      });
      li.appendChild(button);
      results.appendChild(li);
    }
    return found;
  }

  function inView(cell) {
    const p = cellCentre(cell);
    return p.x >= 0 && p.y >= 0 && p.x <= marksW && p.y <= marksH;
  }

  function selectPhoto(i, button) {
    for (const b of results.querySelectorAll("button.selected")) b.classList.remove("selected");
    if (button) button.classList.add("selected");
    const match = new Uint8Array(nPhotos);
    match[i] = 1;
    const n = highlightPhotos(match);
    setText("search-status", P.name[i] + ": " + num(n) + (n === 1 ? " cell" : " cells"));
    if (n) {
      pin(highlighted[0]);
      // bring the first cell into view only when none of them is in view
      const item = mosaicItem();
      if (item && !highlighted.some(inView)) {
        const r = Math.floor(highlighted[0] / G.cols);
        const c = highlighted[0] - r * G.cols;
        viewer.viewport.panTo(
          item.imageToViewportCoordinates(new OSD.Point((c + 0.5) * G.cell_w, (r + 0.5) * G.cell_h))
        );
      }
    }
  }

  let searchTimer = 0;
  input.addEventListener("input", function () {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => search(input.value), 120);
  });
  input.addEventListener("keydown", function (e) {
    if (e.key !== "Enter") return;
    e.preventDefault();
    clearTimeout(searchTimer);
    const found = search(input.value);
    if (found.length === 1) selectPhoto(found[0], results.querySelector("button"));
  });

  // -- target overlay -----------------------------------------------------------------------
  const toggle = $("overlay");
  const opacity = $("overlay-opacity");
  let overlayItem = null;
  let overlayLoading = false;

  function applyOverlay() {
    if (overlayItem) overlayItem.setOpacity(toggle.checked ? opacity.value / 100 : 0);
  }

  if (!D.target) {
    toggle.disabled = true;
    opacity.disabled = true;
    setText("overlay-label", "Target overlay: the target image is gone");
  }
  toggle.addEventListener("change", function () {
    if (toggle.checked && !overlayItem && !overlayLoading && D.target) {
      overlayLoading = true;
      viewer.addTiledImage({
        tileSource: { type: "image", url: D.target.url },
        x: 0,
        y: 0,
        width: 1,
        opacity: opacity.value / 100,
        success: function (e) {
          overlayItem = e.item;
          overlayLoading = false;
          applyOverlay();
        },
        error: function () {
          overlayLoading = false;
          fail("The target image could not be loaded.");
        },
      });
    }
    applyOverlay();
  });
  opacity.addEventListener("input", applyOverlay);

  Object.assign(api, {
    plan: plan,
    grid: G,
    cellAt: cellAt,
    cellCentre: cellCentre,
    lookup: lookup,
    search: function (q) {
      input.value = q;
      return search(q).map((i) => P.id[i]);
    },
    highlightedCells: () => Array.from(highlighted),
    overlay: () => overlayItem,
  });
})();
