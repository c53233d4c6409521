"""Share results through the DVC remote so that `dvc repro --pull` elsewhere restores EVERY
stage from the run-cache instead of rerunning it. Use it instead of `dvc push`:

    python scripts/push_results.py [-r REMOTE] [-j JOBS]

Plain `dvc push --run-cache` (DVC 3.67) is not enough for this pipeline, for two reasons:
- dvc/stage/__init__.py, Stage.run: a stage with a `cache: false` output that is not a
  metric or plot (our reports: left_out.csv, summary.md, compare.md...) gets no run-cache
  entry at all (`run_cache=not no_cache_outs`).
- dvc/repo/push.py, push(): the run-cache entries are copied (StageCache.push), but the list
  they return (`used_run_cache`) is only counted; the objects pushed are those of the
  workspace's cached outputs. The `cache: false` metrics, plots and reports that
  StageCache.save commits to the local cache (dvc/stage/cache.py, _uncached_outs) stay there,
  yet StageCache.restore(pull=True) treats every output of an entry as cached and needs them
  all on the remote, or the stage reruns.
So: (1) save a run-cache entry for every stage that is up to date with dvc.lock, (2) push
with --run-cache, (3) push the objects every local run-cache entry names.
"""
import argparse
import os

from dvc.repo import Repo, lock_repo
from dvc.stage.cache import _can_hash


def run_cache_entries(stage_cache):
    """(key, value) of each entry: .dvc/cache/runs/<key[:2]>/<key>/<value>."""
    root = stage_cache.cache_dir
    for prefix in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        for key in sorted(os.listdir(os.path.join(root, prefix))):
            for value in sorted(os.listdir(os.path.join(root, prefix, key))):
                yield key, value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-r", "--remote", help="remote name (default: the default remote)")
    parser.add_argument("-j", "--jobs", type=int, help="parallel transfers")
    args = parser.parse_args(argv)

    with Repo() as repo, lock_repo(repo):
        saved = []
        for stage in repo.index.stages:
            if stage.cmd and not stage.changed() and _can_hash(stage):
                repo.stage_cache.save(stage)  # also commits its cache: false outputs
                saved.append(stage.addressing)
        print(f"run-cache entries for the up-to-date stages: {', '.join(saved) or 'none'}")
        pushed = repo.push(run_cache=True, remote=args.remote, jobs=args.jobs)
        print(f"dvc push --run-cache: {pushed} files pushed")

        entries = list(run_cache_entries(repo.stage_cache))
        objs = set().union(*repo.stage_cache.get_used_objs(entries).values())
        result = repo.cloud.push(objs, remote=args.remote, jobs=args.jobs)
        print(f"outputs of the {len(entries)} run-cache entries: {len(objs)} objects named, "
              f"{len(result.transferred)} files uploaded")
        if result.failed:
            raise SystemExit(f"push_results: {len(result.failed)} objects failed to upload")


if __name__ == "__main__":
    main()
