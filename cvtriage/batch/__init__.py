"""Many sources in one `cvtriage scan`: expand the arguments into videos (`sources`), scan each
in this process or as one Ray task per video (`runner`, `worker`, `ray_tasks`), and report the
batch (`summary`: batch.json and the failures' lines; the CLI draws its table). Each video goes
through the scan pipeline (cvtriage.scan.pipeline) exactly as alone, its detection log being what
makes it resumable; FiftyOne is written only here, by the driver.
"""
