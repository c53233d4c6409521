"""Stage finetune: train_head's model with the last base layers unfrozen (BatchNorm stays
frozen), at a low learning rate."""
import keras

from catsdogs import params, paths
from catsdogs.data import augmentation, eval_split, train_dataset
from catsdogs.decoded import load_decoded
from catsdogs.files import locked
from catsdogs.models import count_params, save_model, seed_everything
from catsdogs.training import distribution, fit, start_finetune_phase


def main():
    p = params.load()
    with locked("finetune"):
        strategy = distribution(p.train.distribute)  # first: mirrored may split the CPU
        batch_size, seed = p.train.batch_size, p.train.seed
        augment, finetune = augmentation(p.augment), p.finetune
        with strategy.scope():  # the model's variables (and the optimizer's) on every device
            model = keras.models.load_model(paths.HEAD_MODEL)  # safe_mode: no code loads
        seed_everything(seed)
        val = eval_split("val", batch_size)
        start_finetune_phase(model, finetune)
        print(f"finetune: last {finetune.unfreeze_last} base layers unfrozen, "
              f"{count_params(model)['params_trainable']:,} trainable parameters")
        train = train_dataset(*load_decoded("train"), batch_size, augment, seed)
        fit(model, train, val, finetune.epochs, seed, paths.FINETUNE_LIVE, p.train.class_weight)
        save_model(model, paths.FINAL_MODEL)


if __name__ == "__main__":
    main()
