# Open-vocabulary quickstart (no download): ReCo with a tiny CLIP densebox trains itself.
#   densebox quickstart --task zero-shot
# 1. image-caption pairs from the shapes generator ("a photo of a red circle and a blue star
#    on a gray background."); masks are never used for training;
# 2. a tiny CLIP (open_clip, ResNet image tower as MaskCLIP needs) trained from scratch with
#    open_clip's contrastive loss;
# 3. a ReCo index over unlabelled shapes images; references for the class names, with
#    "background" as the context concept (ReCo: tree, sky, building, road, person);
# 4. zero-shot mIoU on held-out images against their masks; the same with the untrained CLIP.
# The dense extractor is the tiny CLIP's own image tower (its C4 map, stride 16).
_base_ = ['./_base_/default_runtime.py']

work_dir = 'work_dirs/quickstart_reco_shapes'
data_root = 'data/shapes_zero_shot/'
img_size = 128

tiny_clip = dict(
    embed_dim=64,
    vision_cfg=dict(image_size=img_size, layers=[1, 1, 1, 1], width=8, patch_size=None),
    text_cfg=dict(context_length=32, vocab_size=49408, width=64, heads=4, layers=2))

quickstart = dict(
    data=dict(img_size=img_size, max_objects=3, size_range=(0.2, 0.5), empty_fraction=0.1,
              seed=0),
    num_captioned=8000,  # image-caption pairs for CLIP training (kept in memory)
    num_index=2000,      # unlabelled images in the ReCo index
    num_val=200,         # held-out images with masks
    # each step captions the images afresh: a shape's colour is named with probability
    # colour_prob, the background with background_prob, so the text tower also meets the
    # bare class names of the prompts ("a photo of a circle.")
    train=dict(iters=800, batch_size=128, lr=2e-3, weight_decay=0.1, warmup_iters=50,
               seed=0, log_interval=50, templates=True, colour_prob=0.1, background_prob=0.25),
    index_batch_size=100,
    baseline=True)       # also run the pipeline with the untrained CLIP

classes = ('background', 'circle', 'square', 'triangle', 'star', 'cross')
model = dict(
    type='ReCoSegmentor',
    data_preprocessor=dict(type='SegDataPreprocessor', mean=[0, 0, 0], std=[255, 255, 255],
                           pad_size_divisor=32),
    clip=dict(model_cfg=tiny_clip, checkpoint=work_dir + '/trained/tiny_clip.pt'),
    extractor=dict(type='CLIPImageFeatures', stage=3),
    classes=classes,
    references=work_dir + '/trained/references.pt',
    retrieval=dict(index=work_dir + '/trained/index', k=50, image_size=img_size,
                   batch_size=50),
    context_classes=('background',),
    dense_clip_inference=True)

test_dataloader = dict(
    batch_size=25,
    num_workers=0,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ShapesSegDataset',
        data_root=data_root,
        data_prefix=dict(img_path='images/val', seg_map_path='masks/val'),
        test_mode=True,
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True),
            dict(type='PackSegInputs'),
        ]))
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_cfg = dict(type='TestLoop')
randomness = dict(seed=0)

# No test-time augmentation: ReCo is evaluated on one view (its resize and centre crop),
# as the paper reports it; tools/test.py --tta says so.
tta_model = None
tta_pipeline = None
