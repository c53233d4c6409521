"""Stage train_head: a frozen ImageNet base and a new head (pooling, dropout, one sigmoid
unit), trained on augmented batches."""
from catsdogs import params, paths
from catsdogs.data import augmentation, eval_split, load_decoded, train_dataset
from catsdogs.models import BACKBONES, build_classifier, compile_binary, save_model
from catsdogs.training import distribution, fit, seed_everything


def main():
    p = params.load()
    strategy = distribution(p.train.distribute)  # first: mirrored may split the CPU
    backbone, image_size = p.model.backbone, p.model.image_size
    weights = paths.pretrained_weights(backbone, image_size)
    batch_size, seed = p.train.batch_size, p.train.seed
    augment = augmentation(**p.augment.model_dump())  # flip, rotation, shift
    epochs, learning_rate, dropout = (p.train_head.epochs, p.train_head.learning_rate,
                                      p.train_head.dropout)
    preprocess = BACKBONES[backbone].preprocess

    seed_everything(seed)
    val, _ = eval_split("val", batch_size, preprocess)
    with strategy.scope():  # the model's variables (and the optimizer's) on every device
        model = build_classifier(backbone, image_size, weights, dropout, seed)  # base frozen
        compile_binary(model, learning_rate)
    print(f"train_head: {backbone}, {epochs} epochs, {model.count_params():,} parameters")
    train = train_dataset(*load_decoded("train"), batch_size, preprocess, augment, seed)
    fit(model, train, val, epochs, seed, paths.HEAD_LIVE)
    save_model(model, paths.HEAD_MODEL)


if __name__ == "__main__":
    main()
