"""The REST API, the login session with CSRF, the live feed, the badge and /metrics, on
the real engine with a real git server. API responses are validated against openapi.yaml."""

from __future__ import annotations

import json
import queue
import re
import threading

import requests
from jsonschema import Draft202012Validator

from tests.conftest import eventually
from tests.gitops.server.conftest import ADMIN_TOKEN, OPENAPI, READONLY_TOKEN, Dash, check_openapi
from tests.gitops.test_engine import deployment
from tests.manifests import WEB_SERVICE

SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: {value}
"""


def test_openapi_schemas_are_valid_json_schema() -> None:
    for schema in OPENAPI["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def _two_apps(dash: Dash) -> tuple[str, str]:
    repo = dash.git.repo("shop")
    sha = repo.commit(
        {
            "web/deploy.yaml": deployment("nginx:1.25"),
            "web/svc.yaml": WEB_SERVICE,
            "other/deploy.yaml": deployment("redis:7", replicas=1, name="cache"),
            "other/secret.yaml": SECRET.format(value="first-password"),
        },
        "first release\n\nwith a body",
    )
    dash.create_app("shop", repo, "web", labels={"team": "a"})
    dash.create_app("other", repo, "other", automated=False, labels={"team": "b"})
    eventually(lambda: dash.status("shop") == ("Synced", "Healthy", sha), 90, "shop Synced+Healthy")
    eventually(lambda: dash.status("other")[0] == "OutOfSync", 60, "other compared")
    return sha, repo.url()


def test_list_get_tree_diff_history_and_actions(dash: Dash) -> None:
    sha, url = _two_apps(dash)

    body = check_openapi(dash.api("GET", "/api/v1/applications"))
    assert [(i["name"], i["syncStatus"]) for i in body["items"]] == [("other", "OutOfSync"), ("shop", "Synced")]
    shop = body["items"][1]
    assert (shop["revision"], shop["shortRevision"], shop["commitMessage"]) == (sha, sha[:7], "first release")
    assert (shop["healthStatus"], shop["autoSync"], shop["repoURL"], shop["path"]) == ("Healthy", True, url, "web")
    assert shop["lastSyncResult"] == "Succeeded" and shop["lastSyncAt"]

    def names(query: str) -> list[str]:
        got = check_openapi(dash.api("GET", "/api/v1/applications?" + query))
        return [i["name"] for i in got["items"]]

    assert names("sync=Synced") == ["shop"]
    assert names("health=Missing") == ["other"]
    assert names("label=team%3Db") == ["other"]
    assert names("label=team") == ["other", "shop"]
    assert names("search=OTH") == ["other"]
    assert names(f"repo={url}&namespace=default") == ["other", "shop"]
    assert names("namespace=elsewhere") == []
    assert names("sort=name&order=desc") == ["shop", "other"]
    page = dash.api("GET", "/api/v1/applications?perPage=1&page=2").json()
    assert (page["total"], page["page"], [i["name"] for i in page["items"]]) == (2, 2, ["shop"])

    got = check_openapi(dash.api("GET", "/api/v1/applications/default/shop"))
    assert got["application"]["status"]["sync"]["revision"] == sha
    assert "managedFields" not in got["application"]["metadata"]

    tree = check_openapi(dash.api("GET", "/api/v1/applications/default/shop/resource-tree"))
    deploy = next(n for n in tree["nodes"] if n["kind"] == "Deployment")
    assert (deploy["status"], deploy["health"]) == ("Synced", "Healthy")
    (rs,) = deploy["children"]
    assert rs["kind"] == "ReplicaSet" and rs["ready"] == "2/2"
    assert [(p["kind"], p["phase"], p["restarts"]) for p in rs["children"]] == [("Pod", "Running", 0)] * 2

    diff = check_openapi(dash.api("GET", "/api/v1/applications/default/other/diff"))
    by_kind = {i["kind"]: i for i in diff["items"]}
    assert by_kind["Deployment"]["status"] == "Missing" and "+  name: cache" in by_kind["Deployment"]["diff"]
    assert "first-password" not in json.dumps(diff) and "++++++++" in by_kind["Secret"]["diff"]

    hist = check_openapi(dash.api("GET", "/api/v1/applications/default/shop/history"))
    assert [(h["id"], h["revision"]) for h in hist["items"]] == [(0, sha)]

    # Sync (admin) of the manual app; then a new commit, refresh and a rollback to entry 0.
    resp = dash.api("POST", "/api/v1/applications/default/other/sync", json={"prune": True})
    assert check_openapi(resp)["message"].startswith("sync requested by admin")
    eventually(lambda: dash.status("other") == ("Synced", "Healthy", sha), 90, "other synced")
    repo = dash.git.repo("shop")
    second = repo.commit({"other/secret.yaml": SECRET.format(value="second-password")}, "rotate")
    resp = dash.api("POST", "/api/v1/applications/default/other/refresh", json={"hard": True})
    assert check_openapi(resp)["message"] == "hard refresh requested by admin"
    eventually(lambda: dash.status("other")[::2] == ("OutOfSync", second), 60, "other sees the new commit")
    diff = dash.api("GET", "/api/v1/applications/default/other/diff").json()
    secret = next(i for i in diff["items"] if i["kind"] == "Secret")
    assert secret["status"] == "OutOfSync" and "password" not in secret["diff"].replace("password:", "")
    assert "first-password" not in secret["diff"] and "second-password" not in secret["diff"]
    dash.api("POST", "/api/v1/applications/default/other/sync", json={})
    eventually(lambda: dash.status("other") == ("Synced", "Healthy", second), 90, "other at the second commit")
    resp = dash.api("POST", "/api/v1/applications/default/other/rollback", json={"id": 0})
    assert resp.status_code == 202, resp.text
    # Deployed at the old commit again (a new history entry); compared with main it is OutOfSync.
    eventually(
        lambda: (
            [h["revision"] for h in dash.api("GET", "/api/v1/applications/default/other/history").json()["items"]]
            == [sha, second, sha]
        ),
        90,
        "other rolled back",
    )

    # Rollback of an auto-synced app needs force; bad requests say why.
    resp = dash.api("POST", "/api/v1/applications/default/shop/rollback", json={"id": 0})
    assert resp.status_code == 400 and "auto-sync" in check_openapi(resp)["error"]
    resp = dash.api("POST", "/api/v1/applications/default/shop/rollback", json={"id": 7, "force": True})
    assert resp.status_code == 404 and "no history entry 7" in resp.json()["error"]
    resp = dash.api("POST", "/api/v1/applications/default/shop/sync", json={"prune": "yes"})
    assert resp.status_code == 400 and check_openapi(resp)["error"] == "prune must be a bool"
    resp = dash.api("GET", "/api/v1/applications/default/nope")
    assert resp.status_code == 404 and "nope" in check_openapi(resp)["error"]

    # Actions are recorded as Events on the Application.
    events = dash.client.list("v1", "Event", "default")["items"]
    reasons = {(e["reason"], e["involvedObject"]["name"]) for e in events}
    assert {("SyncRequested", "other"), ("RefreshRequested", "other"), ("RollbackRequested", "other")} <= reasons


def test_tokens_and_roles(dash: Dash) -> None:
    repo = dash.git.repo("shop")
    repo.commit({"web/svc.yaml": WEB_SERVICE})
    dash.create_app("shop", repo, "web", automated=False)
    eventually(lambda: dash.status("shop")[0] == "OutOfSync", 60, "shop compared")
    for token in (None, "wrong-token"):
        resp = dash.api("GET", "/api/v1/applications", token=token)
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        check_openapi(resp)
        resp = dash.api("POST", "/api/v1/applications/default/shop/sync", token=token, json={})
        assert check_openapi(resp) and resp.status_code == 401
    assert dash.api("GET", "/api/v1/applications", token=READONLY_TOKEN).status_code == 200
    resp = dash.api("POST", "/api/v1/applications/default/shop/sync", token=READONLY_TOKEN, json={})
    assert resp.status_code == 403
    check_openapi(resp)
    assert "operation" not in dash.client.get("gitops.dev/v1alpha1", "Application", "shop", "default")


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def test_dashboard_session_and_csrf(dash: Dash) -> None:
    repo = dash.git.repo("shop")
    sha = repo.commit({"web/svc.yaml": WEB_SERVICE})
    dash.create_app("shop", repo, "web", automated=False)
    eventually(lambda: dash.status("shop")[0] == "OutOfSync", 60, "shop compared")

    s = requests.Session()
    resp = s.get(dash.url + "/", allow_redirects=False, timeout=30)
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    # Without a session: refused; the login form itself needs its CSRF token.
    assert s.post(dash.url + "/apps/default/shop/sync", timeout=30).status_code == 401
    assert s.post(dash.url + "/login", data={"token": ADMIN_TOKEN}, timeout=30).status_code == 403
    login_form = s.get(dash.url + "/login", timeout=30).text
    bad = s.post(dash.url + "/login", data={"token": "nope", "csrf_token": _csrf(login_form)}, timeout=30)
    assert bad.status_code == 401 and "wrong token" in bad.text
    resp = s.post(
        dash.url + "/login",
        data={"token": ADMIN_TOKEN, "csrf_token": _csrf(login_form), "next": "/apps/default/shop"},
        allow_redirects=False,
        timeout=30,
    )
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/apps/default/shop")
    page = s.get(dash.url + "/apps/default/shop", timeout=30).text
    token = _csrf(page)

    # Logged in, but no (or a wrong) CSRF token: refused, nothing requested.
    assert s.post(dash.url + "/apps/default/shop/sync", timeout=30).status_code == 403
    resp = s.post(dash.url + "/apps/default/shop/sync", data={"csrf_token": "forged"}, timeout=30)
    assert resp.status_code == 403
    assert s.post(dash.url + "/api/v1/applications/default/shop/sync", json={}, timeout=30).status_code == 403
    assert "operation" not in dash.client.get("gitops.dev/v1alpha1", "Application", "shop", "default")

    resp = s.post(dash.url + "/apps/default/shop/sync", data={"csrf_token": token, "prune": "1"}, timeout=30)
    assert resp.status_code == 200 and "sync requested by admin (prune)" in resp.text
    eventually(lambda: dash.status("shop") == ("Synced", "Healthy", sha), 90, "shop synced from the dashboard")
    # The session may call the API too, with the CSRF header for writes.
    resp = s.post(
        dash.url + "/api/v1/applications/default/shop/refresh", json={}, headers={"X-CSRF-Token": token}, timeout=30
    )
    assert resp.status_code == 202

    # A read-only login can look but not act.
    ro = requests.Session()
    form = ro.get(dash.url + "/login", timeout=30).text
    ro.post(dash.url + "/login", data={"token": READONLY_TOKEN, "csrf_token": _csrf(form)}, timeout=30)
    page = ro.get(dash.url + "/apps/default/shop", timeout=30)
    assert page.status_code == 200 and 'id="sync"' not in page.text
    assert (
        ro.post(dash.url + "/apps/default/shop/sync", data={"csrf_token": _csrf(page.text)}, timeout=30).status_code
        == 403
    )

    # Log out ends the session.
    s.post(dash.url + "/logout", data={"csrf_token": token}, timeout=30)
    assert s.get(dash.url + "/apps/default/shop", allow_redirects=False, timeout=30).status_code == 302


def test_live_stream_badge_and_metrics(dash: Dash) -> None:
    repo = dash.git.repo("shop")
    first = repo.commit({"web/deploy.yaml": deployment("nginx:1.25", replicas=1)})
    dash.create_app("shop", repo, "web")
    eventually(lambda: dash.status("shop") == ("Synced", "Healthy", first), 90, "shop synced")

    rows: queue.Queue[dict] = queue.Queue()
    stream = requests.get(
        dash.url + "/ui/stream", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, stream=True, timeout=60
    )
    assert stream.headers["Content-Type"].startswith("text/event-stream")

    def read() -> None:
        event = ""
        try:
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "row":
                    rows.put(json.loads(line[6:]))
        except (requests.RequestException, AttributeError):
            pass  # the test closed the stream

    threading.Thread(target=read, daemon=True).start()
    second = repo.commit({"web/deploy.yaml": deployment("nginx:1.26", replicas=1)})
    assert dash.api("POST", "/api/v1/applications/default/shop/refresh").status_code == 202

    def saw_second() -> bool:
        while True:
            row = rows.get(timeout=60)
            # The compared revision moves first (OutOfSync, old pods still Healthy): wait for the synced one.
            done = (row["revision"], row["syncStatus"], row["healthStatus"]) == (second, "Synced", "Healthy")
            if row["key"] == "default/shop" and done:
                return True

    assert saw_second()
    stream.close()

    badge = requests.get(dash.url + "/badge/default/shop.svg", timeout=30)
    assert badge.headers["Content-Type"].startswith("image/svg+xml")
    assert ">Synced<" in badge.text and ">Healthy<" in badge.text
    assert "Not Found" in requests.get(dash.url + "/badge/default/nope.svg", timeout=30).text

    assert requests.get(dash.url + "/healthz", timeout=30).text == "ok\n"
    assert requests.get(dash.url + "/readyz", timeout=30).status_code == 200

    dash.client.create(
        {
            "apiVersion": "gitops.dev/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "broken", "namespace": "default"},
            "spec": {
                "source": {"repoURL": "http://127.0.0.1:9/missing.git", "path": "."},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
            },
        }
    )

    def scrape() -> str:
        return requests.get(dash.url + "/metrics", timeout=30).text

    fail = re.compile(r'gitops_git_fetch_fail_total\{repo="http://127.0.0.1:9/missing.git"\} [1-9]')
    text = eventually(lambda: (t := scrape()) and fail.search(t) and t, 60, "the failed fetch counted")
    assert re.search(
        r'gitops_app_info\{dest_namespace="default",health_status="Healthy",name="shop",namespace="default",'
        r'project="default",repo="[^"]+",sync_status="Synced"\} 1.0',
        text,
    )
    assert re.search(r'gitops_app_sync_total\{name="shop",namespace="default",phase="Succeeded"\} [2-9]', text)
    assert re.search(r"gitops_app_reconcile_seconds_count [1-9]", text)
    assert re.search(r'gitops_git_request_seconds_count\{request_type="fetch"\} [1-9]', text)
    assert 'gitops_workqueue_depth{name="applications"}' in text
    assert "gitops_webhook_requests_total" in text or "gitops_webhook_requests" in text
