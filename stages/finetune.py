"""Stage finetune: train_head's model with the last base layers unfrozen (BatchNorm stays
frozen), at a low learning rate."""
import keras

from catsdogs import params, paths
from catsdogs.data import augmentation, eval_split, load_decoded, train_dataset
from catsdogs.models import (BACKBONES, compile_binary, count_params, find_base, save_model,
                             unfreeze_top)
from catsdogs.training import distribution, fit, seed_everything


def main():
    p = params.load()
    strategy = distribution(p.train.distribute)  # first: mirrored may split the CPU
    backbone, batch_size, seed = p.model.backbone, p.train.batch_size, p.train.seed
    augment = augmentation(**p.augment.model_dump())  # flip, rotation, shift
    epochs, learning_rate, unfreeze_last = (p.finetune.epochs, p.finetune.learning_rate,
                                            p.finetune.unfreeze_last)
    preprocess = BACKBONES[backbone].preprocess

    with strategy.scope():  # the model's variables (and the optimizer's) on every device
        model = keras.models.load_model(paths.HEAD_MODEL)  # safe_mode: no code loads
    seed_everything(seed)
    val, _ = eval_split("val", batch_size, preprocess)
    with strategy.scope():
        unfreeze_top(find_base(model), unfreeze_last)
        compile_binary(model, learning_rate)  # recompiling makes the new trainable flags count
    print(f"finetune: last {unfreeze_last} base layers unfrozen, "
          f"{count_params(model)['params_trainable']:,} trainable parameters")
    train = train_dataset(*load_decoded("train"), batch_size, preprocess, augment, seed)
    fit(model, train, val, epochs, seed, paths.FINETUNE_LIVE)
    save_model(model, paths.FINAL_MODEL)


if __name__ == "__main__":
    main()
