"""The GitOps repository adapter (adapters.git_repo) against a real git
server: ``git http-backend`` behind basic authentication on loopback
(tools/gitserver.py). A second clone pushing in between forces the rejected
push; the remote going away, wrong credentials and conflicting rebases end
in the errors the pipeline tells apart."""

import subprocess

import gitserver
import pytest

from odoo.addons.creativeflow_mlops.adapters import git_repo
from odoo.addons.creativeflow_mlops.adapters.git_repo import (
    GitAuthFailed,
    GitRejected,
    GitUnavailable,
    Repository,
)


@pytest.fixture
def server():
    with gitserver.GitServer() as running:
        yield running


def _repo(server, url, tmp_path, name="odoo", **kwargs):
    values = {"token": server.password, "username": server.username, "timeout": 20}
    values.update(kwargs)
    return Repository(url, "main", tmp_path / name, **values)


def _remote_file(server, name, path, ref="main"):
    done = subprocess.run(
        ["git", "--git-dir", str(server.bare(name)), "show", f"{ref}:{path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


def _remote_log(server, name, ref="main"):
    done = subprocess.run(
        ["git", "--git-dir", str(server.bare(name)), "log", "--format=%H %s", ref],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split(" ", 1) for line in done.stdout.splitlines()]


def test_write_folder_commits_and_pushes_the_files(server, tmp_path):
    url = server.create("gitops")
    repo = _repo(server, url, tmp_path)
    files = {"config.yaml": "image: x\n", "manifests/deployment.yaml": "kind: D\n"}
    commit = repo.write_folder("staging/sentiment", files, "Deploy sentiment 1.0")
    assert commit.created and commit.branch == "main"
    log = _remote_log(server, "gitops")
    assert log[0] == [commit.sha, "Deploy sentiment 1.0"]
    assert _remote_file(server, "gitops", "staging/sentiment/config.yaml") == (
        "image: x\n"
    )
    # the folder is replaced, not merged: a file no longer given goes
    second = repo.write_folder(
        "staging/sentiment", {"config.yaml": "image: y\n"}, "Deploy sentiment 1.1"
    )
    assert second.created
    assert (
        _remote_file(server, "gitops", "staging/sentiment/manifests/deployment.yaml")
        is None
    )
    assert repo.read_text("staging/sentiment/config.yaml") == "image: y\n"


def test_the_same_files_twice_push_once(server, tmp_path):
    url = server.create("gitops")
    repo = _repo(server, url, tmp_path)
    first = repo.write_folder("staging/m", {"config.yaml": "a\n"}, "Deploy m")
    again = repo.write_folder("staging/m", {"config.yaml": "a\n"}, "Deploy m")
    assert again == git_repo.Commit(first.sha, "main", created=False)
    assert len(_remote_log(server, "gitops")) == 2  # the seed and one deploy
    assert repo.pushes == 1


def test_a_change_branch_starts_from_main_and_a_retry_reuses_it(server, tmp_path):
    url = server.create("gitops")
    repo = _repo(server, url, tmp_path)
    files = {"config.yaml": "production\n"}
    change = repo.write_folder(
        "production/m", files, "Promote m", branch="mlops/m-production-d7"
    )
    assert change.created and change.branch == "mlops/m-production-d7"
    assert _remote_file(server, "gitops", "production/m/config.yaml") is None
    assert (
        _remote_file(server, "gitops", "production/m/config.yaml", change.branch)
        == "production\n"
    )
    # the job tried again (a fresh clone, as after a restart): the same branch
    retry = _repo(server, url, tmp_path, name="retry")
    again = retry.write_folder("production/m", files, "Promote m", branch=change.branch)
    assert again == git_repo.Commit(change.sha, change.branch, created=False)
    assert retry.pushes == 0
    retry.delete_branch(change.branch)
    assert retry.remote_branch(change.branch) is None


def test_a_push_rejected_is_rebased_and_pushed_once_more(server, tmp_path):
    url = server.create("gitops")
    repo = _repo(server, url, tmp_path)
    repo.sync()
    # someone else pushes between our fetch and our push
    original = repo.sync

    def sync_then_someone_pushes():
        head = original()
        gitserver.clone_and_push(url, {"other/app.yaml": "x\n"}, "Someone else")
        return head

    repo.sync = sync_then_someone_pushes
    commit = repo.write_folder("staging/m", {"config.yaml": "a\n"}, "Deploy m")
    log = _remote_log(server, "gitops")
    assert [subject for _sha, subject in log[:2]] == ["Deploy m", "Someone else"]
    assert log[0][0] == commit.sha
    assert repo.pushes == 2
    # never a force-push: the other commit is still there
    assert _remote_file(server, "gitops", "other/app.yaml") == "x\n"


def test_a_rebase_in_conflict_fails_naming_the_file(server, tmp_path):
    url = server.create("gitops")
    repo = _repo(server, url, tmp_path)
    original = repo.sync

    def sync_then_someone_edits_the_same_file():
        head = original()
        gitserver.clone_and_push(
            url, {"staging/m/config.yaml": "theirs\n"}, "Someone edits m"
        )
        return head

    repo.sync = sync_then_someone_edits_the_same_file
    with pytest.raises(GitRejected, match="staging/m/config.yaml"):
        repo.write_folder("staging/m", {"config.yaml": "ours\n"}, "Deploy m")
    # theirs stands; ours was never forced over it
    assert _remote_file(server, "gitops", "staging/m/config.yaml") == "theirs\n"


def test_revert_undoes_a_commit(server, tmp_path):
    url = server.create("gitops")
    repo = _repo(server, url, tmp_path)
    repo.write_folder("production/m", {"config.yaml": "v1\n"}, "Deploy m 1")
    second = repo.write_folder("production/m", {"config.yaml": "v2\n"}, "Deploy m 2")
    revert = repo.revert(second.sha, "Revert m to 1")
    assert revert.created
    assert _remote_file(server, "gitops", "production/m/config.yaml") == "v1\n"
    assert _remote_log(server, "gitops")[0][1] == "Revert m to 1"


def test_wrong_credentials_and_a_remote_away_are_told_apart(server, tmp_path):
    url = server.create("gitops")
    assert len(_repo(server, url, tmp_path).check()) == 40
    with pytest.raises(GitAuthFailed):
        _repo(server, url, tmp_path, name="wrong", token="wrong").check()  # noqa: S106
    with pytest.raises(GitAuthFailed):
        _repo(server, url, tmp_path, name="none", token=None).write_folder(
            "staging/m", {"config.yaml": "a\n"}, "Deploy m"
        )
    server.down()
    try:
        with pytest.raises(GitUnavailable):
            _repo(server, url, tmp_path, name="away").check()
    finally:
        server.up()
    with pytest.raises(git_repo.GitFailed, match="no branch"):
        Repository(
            url, "nope", tmp_path / "x", token=server.password, username="mlops"
        ).check()


def test_paths_stay_inside_the_repository(server, tmp_path):
    url = server.create("gitops")
    repo = _repo(server, url, tmp_path)
    for folder in ("../x", "/etc", ".git/hooks", "a/../../b", ""):
        with pytest.raises(ValueError):
            repo.write_folder(folder, {"a": "b"}, "no")
    with pytest.raises(ValueError):
        repo.write_folder("staging/m", {"../../escape": "b"}, "no")
    assert len(_remote_log(server, "gitops")) == 1


def test_the_token_is_in_no_file_of_the_clone(server, tmp_path):
    url = server.create("gitops")
    repo = _repo(server, url, tmp_path)
    repo.write_folder("staging/m", {"config.yaml": "a\n"}, "Deploy m")
    for path in (tmp_path / "odoo").rglob("*"):
        if path.is_file():
            assert server.password.encode() not in path.read_bytes(), path


def test_a_clone_follows_the_repository_to_its_new_address(server, tmp_path):
    """The target's repository moved (another server, another name): the
    clone kept on disk fetches from the address given now."""
    first = server.create("before")
    _repo(server, first, tmp_path).write_folder("staging/m", {"a": "1\n"}, "One")
    moved = server.create("after")
    commit = _repo(server, moved, tmp_path).write_folder(
        "staging/m", {"a": "2\n"}, "Two"
    )
    assert _remote_log(server, "after")[0] == [commit.sha, "Two"]
    assert _remote_file(server, "after", "staging/m/a") == "2\n"
    assert _remote_log(server, "before")[0][1] == "One"
