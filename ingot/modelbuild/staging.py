"""The staged-folder, manifest and lock helpers builds use; they live in `ingot.common.modelcache`, which
the registry's downloads share, and are re-exported here for the builders."""

from ingot.common.modelcache import (MANIFEST_NAME, STAGING_DIR_NAME, STALE_AFTER_S, build_lock, built_manifest,
                                     purge_stale, read_manifest, scratch_dir, staged_model_dir, staging_root,
                                     write_manifest)

__all__ = ["MANIFEST_NAME", "STAGING_DIR_NAME", "STALE_AFTER_S", "build_lock", "built_manifest", "purge_stale",
           "read_manifest", "scratch_dir", "staged_model_dir", "staging_root", "write_manifest"]
