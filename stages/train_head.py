"""Stage train_head: a frozen ImageNet base and a new head (pooling, dropout, one sigmoid
unit for two classes, a softmax over more), trained on augmented batches."""
from catsdogs import params, paths
from catsdogs.data import augmentation, eval_split, train_dataset
from catsdogs.decoded import load_decoded
from catsdogs.files import locked
from catsdogs.models import save_model, seed_everything
from catsdogs.training import distribution, fit, start_head_phase


def main():
    p = params.load()
    with locked("train_head"):
        strategy = distribution(p.train.distribute)  # first: mirrored may split the CPU
        backbone, batch_size, seed = p.model.backbone, p.train.batch_size, p.train.seed
        head = p.train_head
        seed_everything(seed)
        val = eval_split("val", batch_size)
        model = start_head_phase(backbone, p.model.image_size, head, seed, strategy,
                                 len(p.classes))  # base frozen
        print(f"train_head: {backbone}, {len(p.classes)} classes, {head.epochs} epochs, "
              f"{model.count_params():,} parameters")
        train = train_dataset(*load_decoded("train"), batch_size, augmentation(p.augment), seed)
        fit(model, train, val, head.epochs, seed, paths.HEAD_LIVE, p.train.class_weight)
        save_model(model, paths.HEAD_MODEL)


if __name__ == "__main__":
    main()
