"""Synthetic aerial data with exact ground truth: YOLO datasets (`dataset`) and drone flyover
videos (`video`), both drawn by one scene renderer (`scene`: `shapes` and `objects` drawn on
`ground`, seen through `camera_effects`).

No public ladder or fire-extinguisher aerial dataset is at hand, and neither a scan's event
recall nor a label audit's precision can be measured without knowing the truth: this package
makes data whose truth is known exactly.
"""
