"""Wide cameras from image geometry, before any photometric training.

Three solvers that need no field: structure from motion (:mod:`.sfm`, COLMAP through pycolmap),
a rotation-only model for views that share one optical centre (:mod:`.rotation`, OpenCV features
and a shared-focal bundle adjustment), and the choice between them by evidence that needs no
ground truth, with the world frame chosen from the recovered geometry (:mod:`.initialiser`). This
folder imports neither nerfstudio nor the rest of mzen; poses are returned in nerfstudio's
convention (camera looks down ``-z``, ``y`` up), as camera-to-world ``(K, 3, 4)`` arrays.
"""
