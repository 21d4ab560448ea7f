"""COCO data: download, TFRecord conversion, augmentation, tf.data input pipelines, generated shapes."""
