// Every attribute or element in `root` that can run code or load a page (used by lab_harness).
(root) => {
  const bad = [];
  const attrs = ['href', 'src', 'action', 'formaction', 'data', 'xlink:href', 'srcdoc', 'poster'];
  for (const el of root.querySelectorAll('*')) {
    for (const a of attrs) {
      const v = el.getAttribute(a);
      if (v === null) continue;
      const clean = v.replace(/[\u0000-\u0020]/g, '').toLowerCase();
      if (a === 'srcdoc' || /^(javascript|vbscript|data):/.test(clean)) bad.push(el.tagName + ' ' + a + '=' + v);
    }
  }
  for (const el of root.querySelectorAll('script, iframe, object, embed, form, meta, base, frame')) bad.push('<' + el.tagName.toLowerCase() + '>');
  for (const el of root.querySelectorAll('*')) for (const at of el.getAttributeNames()) if (at.toLowerCase().startsWith('on')) bad.push(el.tagName + ' ' + at);
  return [...new Set(bad)];
}
