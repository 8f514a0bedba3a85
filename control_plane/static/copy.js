// The console's "Copy" buttons (<button data-copy="<element id>" hidden>): shown only where the
// clipboard API is there, they copy the element's text. Without JavaScript the text stays on the
// page to select by hand.
for (const button of document.querySelectorAll("button[data-copy]")) {
  const target = document.getElementById(button.dataset.copy);
  if (!target || !navigator.clipboard) continue;
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(target.textContent.trim());
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed: select the text";
    }
  });
}
