"""Many sources in one `cvtriage scan`: expand the arguments into videos (`sources`), scan each
in this process or as one Ray task per video (`runner`, `ray_tasks`), and report the batch
(`summary`). Each video is scanned by `cvtriage.scan` exactly as alone, its detection log being
what makes it resumable; FiftyOne is written only here, by the driver.
"""
