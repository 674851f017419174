// A little behaviour for the dashboard: keyboard navigation in the review queue, live regrade progress.
document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
  if (typing || event.metaKey || event.ctrlKey || event.altKey) return;
  const target = { j: "next", k: "previous" }[event.key];
  const link = target && document.getElementById(target);
  if (link) { window.location.href = link.href; }
});

(function pollRegrade() {
  const card = document.getElementById("regrade");
  if (!card) return;
  const final = ["finished", "cancelled", "failed"];
  if (final.includes(card.dataset.status)) return;
  const tick = async () => {
    const response = await fetch(card.dataset.progressUrl, { credentials: "same-origin" });
    if (!response.ok) return;
    const r = await response.json();
    document.getElementById("progress").value = r.done + r.failed;
    document.getElementById("status").textContent = r.status;
    document.getElementById("counts").textContent = `${r.done} done, ${r.failed} failed of ${r.total}`;
    document.getElementById("summary").textContent =
      `${r.summary.up} up, ${r.summary.down} down, ${r.summary.unchanged} unchanged`;
    if (final.includes(r.status)) { window.location.reload(); } else { setTimeout(tick, 700); }
  };
  setTimeout(tick, 500);
})();
