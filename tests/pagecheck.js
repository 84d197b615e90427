// Measures a report page as the browser laid it out; tests/pagecheck.py runs it with
// page.evaluate(fn, options) and judges the numbers. Nothing here knows the report's markup
// or class names: it walks every element, text, chart and link, so templates may change.
(options) => {
  const vw = document.documentElement.clientWidth;
  const label = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += "#" + el.id;
    const cls = el.getAttribute("class");
    if (cls && cls.trim()) s += "." + cls.trim().split(/\s+/).join(".");
    return s;
  };
  const where = (el) => {
    const parts = [];
    for (let e = el; e && e !== document.body && parts.length < 5; e = e.parentElement) {
      parts.unshift(label(e));
    }
    const text = (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 50);
    return parts.join(" > ") + (text ? ` "${text}"` : "");
  };
  // Folded content is part of the page a reader can open: measure it open.
  if (options.openDetails) for (const d of document.querySelectorAll("details")) d.open = true;

  // Horizontal overflow. An element past the viewport is fine when an ancestor that
  // scrolls sideways (its own box, itself inside the viewport) holds it, or when it is
  // part of an SVG drawing (clipped to the drawing by design). Content cut off by
  // overflow: hidden is not fine: a reader cannot reach it.
  const clipper = (el, self = false) => {
    for (let a = self ? el : el.parentElement; a && a !== document.body; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== "visible") return a;
    }
    return null;
  };
  const scrolls = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  const fitsMemo = new Map();
  const fits = (el) => {
    if (fitsMemo.has(el)) return fitsMemo.get(el);
    const r = el.getBoundingClientRect();
    let ok = r.left >= -1 && r.right <= vw + 1;
    if (!ok) {
      const c = clipper(el);
      ok = c !== null && (scrolls(c) || c instanceof SVGElement) && fits(c);
    }
    fitsMemo.set(el, ok);
    return ok;
  };
  const wide = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (fits(el)) continue;
    const p = el.parentElement;
    if (p && p !== document.body && !fits(p)) continue; // the outermost offender only
    wide.push(`${where(el)}: x ${Math.round(r.left)} to ${Math.round(r.right)} px`);
  }
  // Text that runs out of its box (a long word, an address) sticks out as much.
  const texts = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = texts.nextNode(); n; n = texts.nextNode()) {
    const parent = n.parentElement;
    if (!parent || !n.data.trim() || parent.closest("svg") || !fits(parent)) continue;
    const range = document.createRange();
    range.selectNodeContents(n);
    const r = range.getBoundingClientRect();
    if ((r.width === 0 && r.height === 0) || (r.left >= -1 && r.right <= vw + 1)) continue;
    const c = clipper(parent, true);
    if (c !== null && (scrolls(c) || c instanceof SVGElement) && fits(c)) continue;
    wide.push(`text of ${where(parent)}: x ${Math.round(r.left)} to ${Math.round(r.right)} px`);
  }
  const pageWidth = Math.max(document.documentElement.scrollWidth, document.body.scrollWidth);

  // Text squeezed into a column so narrow that it wraps a few letters per line.
  const squeezed = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const chars = n.data.replace(/\s+/g, "").length;
    if (chars < 6 || !n.parentElement || n.parentElement.closest("svg")) continue;
    const range = document.createRange();
    range.selectNodeContents(n);
    const rects = [...range.getClientRects()].filter((r) => r.width > 0);
    const lines = new Set(rects.map((r) => Math.round(r.top))).size;
    if (lines >= 3 && chars / lines < options.minCharsPerLine) {
      squeezed.push(`${where(n.parentElement)}: ${chars} characters on ${lines} lines`);
    }
  }

  // Charts: every SVG drawing's text (size on screen, colours) and marks (colours).
  const paint = (el, prop) => {
    const v = getComputedStyle(el)[prop];
    return v && v.startsWith("rgb") ? v : null;
  };
  const opacity = (el) => {
    let o = 1;
    for (let e = el; e instanceof SVGElement; e = e.parentElement) {
      o *= parseFloat(getComputedStyle(e).opacity);
    }
    return o;
  };
  const alpha = (c) => {
    const parts = (c.match(/\(([^)]*)\)/) || ["", ""])[1].split(/[\s,/]+/).filter(Boolean);
    return parts.length > 3 ? parseFloat(parts[3]) : 1;
  };
  const pageBackground = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      if (c && c.startsWith("rgb") && alpha(c) > 0) return c;
    }
    return "rgb(255, 255, 255)";
  };
  const decorative = (el) =>
    el.closest('[aria-hidden="true"], [role="presentation"], [role="none"]') !== null;
  const area = (r) => r.width * r.height;
  // What is painted under a text: the topmost filled shape of the same drawing that comes
  // before it in document order (SVG paints in document order) at its centre. Marks are
  // held against the chart's background (WCAG 1.4.11's "adjacent colour" of a bar or a line
  // is the plot it stands on).
  const under = (el, svg) => {
    el.scrollIntoView({ block: "center", inline: "center" });
    const r = el.getBoundingClientRect();
    const hits = document.elementsFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    for (const hit of hits) {
      if (hit === el || hit.contains(el) || el.contains(hit) || !svg.contains(hit)) continue;
      if (!(hit instanceof SVGGeometryElement)) continue;
      if (!(hit.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING)) continue;
      const fill = paint(hit, "fill");
      if (!fill) continue;
      const a = opacity(hit) * parseFloat(getComputedStyle(hit).fillOpacity);
      return { colour: fill, alpha: a };
    }
    return null;
  };
  const charts = [];
  if (options.charts) {
    for (const svg of document.body.querySelectorAll("svg")) {
      if (svg.parentElement.closest("svg")) continue;
      const box = svg.getBoundingClientRect();
      if (area(box) === 0) continue;
      const chart = {
        where: where(svg).slice(0, 120), background: pageBackground(svg.parentElement),
        texts: [], marks: [],
      };
      for (const t of svg.querySelectorAll("text")) {
        const text = t.textContent.trim();
        const m = t.getScreenCTM();
        if (!text || m === null || getComputedStyle(t).visibility === "hidden") continue;
        const cs = getComputedStyle(t);
        const fill = paint(t, "fill");
        chart.texts.push({
          text: text.slice(0, 60),
          px: parseFloat(cs.fontSize) * Math.sqrt(Math.abs(m.a * m.d - m.b * m.c)),
          colour: fill, alpha: fill ? opacity(t) * parseFloat(cs.fillOpacity) * alpha(fill) : 0,
          under: options.contrast ? under(t, svg) : null,
        });
      }
      for (const s of svg.querySelectorAll("rect, circle, ellipse, line, polyline, polygon, path")) {
        const r = s.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;
        const cs = getComputedStyle(s);
        if (cs.visibility === "hidden" || cs.display === "none") continue;
        const fill = s.tagName === "line" ? null : paint(s, "fill"); // a line has no inside
        const stroke = paint(s, "stroke");
        const colour = fill || stroke;
        if (!colour) continue;
        const own = fill ? parseFloat(cs.fillOpacity) : parseFloat(cs.strokeOpacity);
        // Need no contrast of their own: decoration (marked aria-hidden or presentation),
        // reference rules (straight lines across half the drawing or more: gridlines,
        // axes, whose values the labels carry) and backgrounds (a quarter of the drawing
        // or more: the marks drawn on them are what is checked).
        const rule = !fill && ((r.height < 1 && r.width >= 0.5 * box.width) ||
                               (r.width < 1 && r.height >= 0.5 * box.height));
        const exempt = decorative(s) || rule || area(r) >= 0.25 * area(box);
        chart.marks.push({
          what: `${label(s)}${fill ? " fill" : " stroke"}`,
          colour, alpha: opacity(s) * own * alpha(colour), exempt, under: null,
        });
      }
      charts.push(chart);
    }
    window.scrollTo(0, 0);
  }

  // Every reference to another resource, resolved as the browser resolves it.
  const links = [];
  const attrs = ["href", "src", "action", "data", "poster"];
  for (const el of document.querySelectorAll("*")) {
    for (const name of attrs) {
      const v = el.getAttribute(name);
      if (v !== null) links.push({ where: label(el), url: new URL(v, document.baseURI).href });
    }
    const xlink = el.getAttributeNS("http://www.w3.org/1999/xlink", "href");
    if (xlink !== null) links.push({ where: label(el), url: new URL(xlink, document.baseURI).href });
    const srcset = el.getAttribute("srcset");
    if (srcset !== null) {
      for (const part of srcset.split(",")) {
        const u = part.trim().split(/\s+/)[0];
        if (u) links.push({ where: label(el), url: new URL(u, document.baseURI).href });
      }
    }
  }
  const ids = [...document.querySelectorAll("[id], a[name]")].map((e) => e.id || e.name);

  return { viewport: vw, pageWidth, wide, squeezed, charts, links, ids };
}
