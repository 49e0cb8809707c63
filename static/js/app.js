// Small behaviours that need no framework: zoomable document images.
document.addEventListener("click", (event) => {
  const img = event.target.closest("img.zoomable");
  if (!img) return;
  event.preventDefault();
  img.classList.toggle("zoomed");
});
