# iFormer ImageNet classifier (sail-sg/iFormer): for parameter / FLOP counts against the
# paper and for checking converted weights, e.g.
#   python tools/analyze_model.py configs/_base_/models/iformer_cls.py --shape 224 224 \
#       --cfg-options model.arch=b
# Paper (224 x 224): S 20M / 4.8G, B 48M / 9.4G, L 87M / 14.0G (official model file:
# 19.866M / 4.849G, 47.866M / 9.379G, 86.637M / 14.048G).
model = dict(type='IFormerClassifier', arch='s', num_classes=1000)
