"""Screenshot of the LoRA epochs tab over the fake service (not a test; run by hand):
`.venv/bin/python tests/ui_screenshot_epochs.py [OUT_DIR]` -> OUT_DIR/epochs_tab.png (Chromium at /usr/bin/chromium)."""
import subprocess, sys, time, os, urllib.request
from playwright.sync_api import sync_playwright
port = 7891
OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/epochs_shot"
data = OUT + "/data"
os.makedirs(data, exist_ok=True)
open(OUT + "/prompt.txt", "w").write("# kohya sample prompts\n1girl, solo --n lowres --w 64 --h 64 --s 2 --d 7 --ss euler_a\n")
env = dict(os.environ, CREATIONMIX_FAKE_STEP_DELAY="0")
srv = subprocess.Popen([sys.executable, "tests/fake_app.py", "--port", str(port), "--data-dir", data], env=env,
                       stdout=open(OUT + "/srv.log", "w"), stderr=subprocess.STDOUT)
try:
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2); break
        except Exception:
            time.sleep(1)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        page = b.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#cm_tab_epochs-button, button[role=tab]:has-text('LoRA epochs')").first.click()
        page.locator("#cm_ep_prompts input[type=file]").set_input_files(OUT + "/prompt.txt")
        time.sleep(2)
        page.locator("#cm_ep_run").click()
        page.locator("#cm_ep_status").get_by_text("cells made").wait_for(timeout=60000)
        time.sleep(2)
        page.screenshot(path=OUT + "/epochs_tab.png", full_page=True)
        print("ok", page.locator("#cm_ep_status").inner_text())
        b.close()
finally:
    srv.terminate(); srv.wait()
