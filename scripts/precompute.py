"""`make precompute`: the Vulnerability page's results at its default settings for every bundled model.

For each model in assets/models this computes (on the CPU, in float32, from scratch) the shared
curved subspace S, the detector's calibration, the two vulnerability experiments and the detector's
evaluation against attacks, at ``geometry.precomputed.PAGE_DEFAULTS``, and writes them to
``assets/precomputed/<model>/`` (``<kind>.json`` + ``<kind>.npz``). The detector is the default variant
(``geometry.detector_variant``): the one chosen on the development half of the model's committed
pre-registered evaluation (``reports/<model>/detector_preregistered.json``), recorded in
``detector_variant.json``, else the documented fallback; when its S is of another construction than the
page's S, that S ships too (``subspace-<construction>``). Each later result is computed
from the earlier ones *as read back from those files*, so what ships is exactly what a user gets.
Prints progress and the seconds per model. ``--models a,b`` limits the models; ``--out`` writes
elsewhere (the default is the folder the library reads).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _say(msg: str) -> None:
    print(msg, flush=True)


def precompute_model(name: str, out: Path) -> dict:
    import torch

    from geometry import precomputed as pre
    from geometry.detection import detector_key, model_detector
    from geometry.detector_variant import (FALLBACK, recorded_variant, variant_record,
                                           write_variant_record)
    from geometry.loading import load_classifier
    from geometry.subspace import model_fingerprint, model_subspace, subspace_settings
    from geometry.tasks import held_out_detector_evaluation, held_out_vulnerability

    D = pre.PAGE_DEFAULTS
    t0 = time.perf_counter()
    clf = load_classifier(name, device="cpu", dtype=torch.float32)
    fp = model_fingerprint(clf)
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    times = {}

    def step(label, fn):
        t = time.perf_counter()
        _say(f"  {label} ...")
        res = fn()
        times[label] = time.perf_counter() - t
        _say(f"  {label}: {times[label]:.1f} s")
        return res

    def reload(kind, found):
        if found is None:
            raise SystemExit(f"{name}: the {kind} just written does not read back; see the log above")
        return found

    settings = subspace_settings(clf, images=D["images"], m=D["m"], estimator=D["estimator"])
    S0 = step("S", lambda: model_subspace(clf, images=D["images"], m=D["m"], estimator=D["estimator"], cache=False))
    pre.write_entry(folder, "subspace", kind="subspace", fingerprint=fp, key=pre.subspace_key(settings),
                    data=pre.subspace_images_digest(clf, settings), **_pair(pre.encode_subspace(S0)))
    S = reload("S", pre.shipped_subspace(clf, settings))

    report = ROOT / "reports" / name / "detector_preregistered.json"
    if report.is_file():
        import json

        write_variant_record(folder, variant_record(name, fp, json.loads(report.read_text()),
                                                    str(report.relative_to(ROOT))))
        found = recorded_variant(clf)
        variant = reload("detector variant", found)[0]
        _say(f"  detector variant: {variant.key} (pre-registered, {report.relative_to(ROOT)})")
    else:
        variant = FALLBACK
        _say(f"  detector variant: {variant.key} (fallback: no {report.relative_to(ROOT)})")
    S_det = S
    if variant.construction != S.construction:
        c = variant.construction
        settings_c = subspace_settings(clf, images=D["images"], m=D["m"], estimator=D["estimator"], construction=c)
        Sc0 = step(f"S ({c} construction, for the detector)",
                   lambda: model_subspace(clf, images=D["images"], m=D["m"], estimator=D["estimator"],
                                          construction=c, cache=False))
        pre.write_entry(folder, f"subspace-{c}", kind="subspace", fingerprint=fp, key=pre.subspace_key(settings_c),
                        data=pre.subspace_images_digest(clf, settings_c), **_pair(pre.encode_subspace(Sc0)))
        S_det = reload(f"S ({c})", pre.shipped_subspace(clf, settings_c))
    if variant.select != S_det.select:
        S_det = S_det.with_select(variant.select)

    dkey = detector_key(S_det, fpr=D["fpr"], images=D["calibration_images"], directions=D["directions"],
                        score=variant.score)
    det0 = step("detector calibration", lambda: model_detector(clf, S_det, fpr=D["fpr"],
                                                                images=D["calibration_images"],
                                                                directions=D["directions"], score=variant.score,
                                                                cache=False))
    pre.write_entry(folder, "detector", kind="detector", fingerprint=fp, key=pre.detector_key(S_det, dkey),
                    data=pre.detector_images_digest(clf, D["calibration_images"], 0),
                    **_pair(pre.encode_detector(det0)))
    det = reload("detector", pre.shipped_detector(clf, S_det, dkey, D["calibration_images"], 0))

    vul = step("vulnerability experiments",
               lambda: held_out_vulnerability(clf, S, D["experiment_images"], D["draws"], cache=False))
    vkey = pre.vulnerability_key(S, D["experiment_images"], D["draws"])
    vdata = pre.held_out_images_digest(clf, D["experiment_images"])
    pre.write_entry(folder, "vulnerability", kind="vulnerability", fingerprint=fp, key=vkey, data=vdata,
                    **_pair(pre.encode_vulnerability(vul)))
    reload("vulnerability", pre.find(clf, "vulnerability", vkey, lambda e: pre.decode_vulnerability(e, S),
                                     data=lambda: vdata, cache=folder / ".unused"))

    ev = step("detector evaluation", lambda: held_out_detector_evaluation(
        clf, det, D["calibration_images"], D["evaluation_images"], D["sizes"], cache=False))
    ekey = pre.evaluation_key(det, D["calibration_images"], D["evaluation_images"], D["sizes"])
    edata = pre.held_out_images_digest(clf, D["calibration_images"] + D["evaluation_images"])
    pre.write_entry(folder, "evaluation", kind="evaluation", fingerprint=fp, key=ekey, data=edata,
                    **_pair(pre.encode_evaluation(ev)))
    reload("evaluation", pre.find(clf, "evaluation", ekey, lambda e: pre.decode_evaluation(e, det),
                                  data=lambda: edata, cache=folder / ".unused"))
    size = sum(p.stat().st_size for p in folder.iterdir())
    return {"model": name, "fingerprint": fp, "seconds": time.perf_counter() - t0, "bytes": size,
            "variant": variant.key, **times}


def _pair(meta_arrays):
    meta, arrays = meta_arrays
    return {"meta": meta, "arrays": arrays}


def main(argv=None) -> int:
    from geometry.zoo import zoo_names

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help="comma-separated bundled model names (default: all)")
    p.add_argument("--out", default=None, help="output folder (default: assets/precomputed)")
    args = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    names = zoo_names() if not args.models else [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(zoo_names()))
    if unknown:
        print(f"error: not bundled models: {', '.join(unknown)} (bundled: {', '.join(zoo_names())})", file=sys.stderr)
        return 2
    from geometry import precomputed as pre

    out = Path(args.out) if args.out else pre.precomputed_dir()
    if out is None:
        print(f"error: ${pre.ENV} is off; give --out", file=sys.stderr)
        return 2
    os.environ[pre.ENV] = str(out.resolve())  # the read-back checks look where we write
    out.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    for i, name in enumerate(names, 1):
        _say(f"[{i}/{len(names)}] {name}")
        r = precompute_model(name, out)
        _say(f"[{i}/{len(names)}] {name}: {r['seconds']:.1f} s, {r['bytes'] / 1024:.0f} KiB, fingerprint "
             f"{r['fingerprint']}, detector {r['variant']}")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    _say(f"done: {len(names)} models in {time.perf_counter() - total:.1f} s; {out} holds {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
