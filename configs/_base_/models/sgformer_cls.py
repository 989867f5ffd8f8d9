# SG-Former ImageNet classifier (OliverRensu/SG-Former): for parameter / FLOP counts and for
# checking converted weights, e.g.
#   python tools/analyze_model.py configs/_base_/models/sgformer_cls.py --shape 224 224 \
#       --cfg-options model.arch=b
model = dict(type='SGFormerClassifier', arch='s', num_classes=1000)
