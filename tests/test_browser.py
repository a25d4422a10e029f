"""A real browser runs notebook 04 in JupyterLab, as a reader would (`make browser`; slow, so not in `make test`).

Debian's Chromium (/usr/bin/chromium), driven by playwright, opens 04_dcl_batch_size.ipynb in a JupyterLab this
test starts on a free port, over a temporary copy of notebooks/ (Lab's autosave never touches the repository's
notebooks), with a private run cache and results store. It types `preset = "smoke"` into the parameters cell,
runs all cells from the Run menu and waits for every cell's execution count, then checks: no exception in any
output, a figure rendered, the project's kernel ("Python 3 (ssl_core)") in use, and a progress bar shown while it
ran (the Lab server runs without $TQDM_DISABLE). Screenshots land in build/browser/.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = "04_dcl_batch_size.ipynb"
KERNEL_NAME, KERNEL_DISPLAY = "ssl_core", "Python 3 (ssl_core)"
SHOTS = ROOT / "build" / "browser"
RUN_TIMEOUT = 900          # seconds for Run All: the smoke preset takes minutes on a busy 2-core machine
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BAR_TEXT = re.compile(r"\d+%\|")                 # tqdm's text: " 40%|████      | 2/5 [...]"
EXCEPTION = re.compile(r"Traceback|^\w*(Error|Exception)\b", re.M)

pytestmark = [
    pytest.mark.skipif(not os.environ.get("SSL_CORE_BROWSER"),
                       reason="slow (minutes): run by `make browser`, which sets SSL_CORE_BROWSER=1"),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it)"),
]

# Lab settings for the test's server: every cell in the DOM (no windowing), code lines unwrapped (End reaches the
# end of the parameter line), no news or update checks.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none", "codeCellConfig": {"lineWrap": False}},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}

# One look at the page: each code cell's prompt, the outputs' errors, images and progress bars, the kernel shown.
PAGE_STATE = """() => {
  const text = (sel) => [...document.querySelectorAll(sel)].map((e) => e.textContent || '');
  return {
    prompts: text('.jp-Notebook .jp-CodeCell .jp-InputPrompt').map((t) => t.trim()),
    stderr: text('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'),
    images: document.querySelectorAll('.jp-OutputArea-output img').length,
    bars: document.querySelectorAll('.jp-OutputArea-output .widget-hprogress, .jp-OutputArea-output progress').length,
    outputs: text('.jp-OutputArea-output').join('\\n'),
    kernel: text('.jp-NotebookPanel-toolbar .jp-Toolbar-kernelName, .jp-NotebookPanel-toolbar .jp-KernelName,'
                 + ' .jp-StatusBar-Widget').join(' | '),
  };
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server over a copy of notebooks/ with a private cache and store; yields (url, notebooks dir)."""
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = tmp_path / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "SSL_CORE_STORE", "JUPYTER_PATH")}
    env.update(SSL_CORE_CACHE=str(tmp_path / "cache"), SSL_CORE_RESULTS=str(tmp_path / "results"),
               CODECARBON_LOG_LEVEL="error", RAY_AUTH_MODE="disabled",
               JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               IPYTHONDIR=str(tmp_path / "ipython"))
    port = free_port()
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
         f"--ServerApp.root_dir={notebooks}", f"--LabApp.user_settings_dir={settings}",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        + (["--allow-root"] if os.geteuid() == 0 else []),              # CI containers run as root
        cwd=notebooks, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            assert server.poll() is None, f"JupyterLab exited:\n{(tmp_path / 'lab.log').read_text()[-3000:]}"
            try:
                get_json(f"{url}/api/status")
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not answer in 2 minutes:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
        yield url, notebooks
    finally:
        try:
            for kernel in get_json(f"{url}/api/kernels"):
                req = urllib.request.Request(f"{url}/api/kernels/{kernel['id']}", method="DELETE")
                urllib.request.urlopen(req, timeout=30).close()
        except OSError:
            pass
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
        print(f"JupyterLab log (tail):\n{(tmp_path / 'lab.log').read_text()[-2000:]}")


def test_lab_runs_notebook_04_with_the_smoke_preset(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    url, notebooks = lab
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    started = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        page = browser.pages[0] if browser.pages else browser.new_page()
        page.set_default_timeout(120_000)
        try:
            run_notebook(page, url, notebooks, started)
        except BaseException:
            page.screenshot(path=SHOTS / "failed.png")
            raise
        finally:
            browser.close()


def run_notebook(page, url, notebooks, started):
    page.goto(f"{url}/lab/tree/{NOTEBOOK}")
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell")
    cells.first.wait_for()
    # The kernel starts with the notebook: wait until it is idle (no kernel chooser: ssl_core was found).
    kernel = wait_for_kernel(url)
    assert kernel["name"] == KERNEL_NAME, f"the notebook runs on kernel {kernel['name']!r}, not {KERNEL_NAME!r}"
    page.screenshot(path=SHOTS / "01_opened.png")

    # The parameters cell, through the editor: replace its first line, `preset = "default"  # ...`.
    params = cells.first
    params.locator(".cm-content").click()
    page.keyboard.press("Control+Home")
    page.keyboard.press("Shift+End")
    page.keyboard.insert_text('preset = "smoke"')
    first_line = params.locator(".cm-line").first.text_content()
    assert first_line == 'preset = "smoke"', f"parameters cell's first line reads {first_line!r}"
    page.keyboard.press("Escape")                # command mode
    page.screenshot(path=SHOTS / "02_parameters_smoke.png")

    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

    run_started = time.monotonic()
    bar_seen, state, idle_since = False, None, None
    while time.monotonic() < run_started + RUN_TIMEOUT:
        time.sleep(2)
        state = page.evaluate(PAGE_STATE)
        running = any(p.startswith("[*]") for p in state["prompts"])
        if running and time.monotonic() > run_started + 20 and not (SHOTS / "03_running.png").exists():
            page.screenshot(path=SHOTS / "03_running.png")
        if state["bars"] and not (SHOTS / "03_running_progress_bar.png").exists():
            page.locator(".jp-OutputArea-output .widget-hprogress, .jp-OutputArea-output progress").first \
                .scroll_into_view_if_needed()
            page.screenshot(path=SHOTS / "03_running_progress_bar.png")
        bar_seen = bar_seen or bool(state["bars"]) or bool(BAR_TEXT.search(state["outputs"]))
        if any(EXCEPTION.search(t) for t in state["stderr"]):
            break                                 # Run All stops at an exception: report it below
        done = state["prompts"] and all(re.fullmatch(r"\[\d+\]:", p) for p in state["prompts"])
        if done and get_json(f"{url}/api/kernels/{kernel['id']}")["execution_state"] == "idle":
            break
        if not done and not running \
                and get_json(f"{url}/api/kernels/{kernel['id']}")["execution_state"] == "idle":
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 60:
                break                              # idle for a minute with cells never run
        else:
            idle_since = None
    page.screenshot(path=SHOTS / "04_finished.png")
    print(f"browser test: Run All took {time.monotonic() - run_started:.0f} s, "
          f"{time.monotonic() - started:.0f} s since the browser started; prompts {state['prompts']}")

    errors = [t[-1500:] for t in state["stderr"] if EXCEPTION.search(t)]
    assert not errors, f"exceptions in the outputs:\n" + "\n---\n".join(errors)
    assert all(re.fullmatch(r"\[\d+\]:", p) for p in state["prompts"]), \
        f"not every cell ran within {RUN_TIMEOUT} s: prompts {state['prompts']}"
    assert state["images"] >= 1, "no figure was rendered"
    page.locator(".jp-OutputArea-output img").first.scroll_into_view_if_needed()
    page.locator(".jp-OutputArea-output img").first.screenshot(path=SHOTS / "05_first_figure.png")
    assert KERNEL_DISPLAY in state["kernel"], f"the kernel shown is {state['kernel']!r}, not {KERNEL_DISPLAY!r}"
    assert bar_seen, "no progress bar (tqdm widget or its text) appeared while the notebook ran"

    # The saved copy agrees: smoke parameters, every code cell counted, no error output.
    page.keyboard.press("Control+s")
    for _ in range(60):                           # until the save lands on disk
        nb = json.loads((notebooks / NOTEBOOK).read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        if code[-1]["execution_count"]:
            break
        time.sleep(0.5)
    assert "".join(code[0]["source"]).startswith('preset = "smoke"')
    assert all(c["execution_count"] for c in code), "a code cell has no execution count in the saved notebook"
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert nb["metadata"]["kernelspec"]["name"] == KERNEL_NAME


def wait_for_kernel(url: str, timeout: float = 300) -> dict:
    """The notebook session's kernel ({id, name, execution_state}) once it is idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sessions = [s for s in get_json(f"{url}/api/sessions") if s["path"].endswith(NOTEBOOK)]
        if sessions and sessions[0].get("kernel") and sessions[0]["kernel"]["execution_state"] == "idle":
            return sessions[0]["kernel"]
        time.sleep(1)
    pytest.fail(f"no idle kernel for {NOTEBOOK} after {timeout:.0f} s (sessions: {get_json(f'{url}/api/sessions')})")
