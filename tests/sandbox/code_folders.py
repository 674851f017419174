"""Whole student code folders in the shape of the course's PyTorch skeleton (DataReader.py, ImageUtils.py, NetWork.py,
Model.py, main.py): a correct one, and one per classic mistake, each a small edit of the correct one."""

from __future__ import annotations

from pathlib import Path

from tests.sandbox.submissions import NETWORK

DATA_READER = '''
import os
import pickle
import numpy as np

"""This script implements the functions for reading data."""


def load_data(data_dir):
    """Load the CIFAR-10 dataset.

    Returns:
        x_train: An numpy array of shape [50000, 3072]. (dtype=np.float32)
        y_train: An numpy array of shape [50000,]. (dtype=np.int32)
        x_test: An numpy array of shape [10000, 3072]. (dtype=np.float32)
        y_test: An numpy array of shape [10000,]. (dtype=np.int32)
    """
    ### YOUR CODE HERE
    images, labels = [], []
    for i in range(1, 6):
        with open(os.path.join(data_dir, "data_batch_%d" % i), "rb") as fo:
            batch = pickle.load(fo, encoding="bytes")
        images.append(batch[b"data"])
        labels.extend(batch[b"labels"])
    x_train = np.concatenate(images).astype(np.float32)
    y_train = np.array(labels, dtype=np.int32)
    with open(os.path.join(data_dir, "test_batch"), "rb") as fo:
        batch = pickle.load(fo, encoding="bytes")
    x_test = batch[b"data"].astype(np.float32)
    y_test = np.array(batch[b"labels"], dtype=np.int32)
    ### END CODE HERE
    return x_train, y_train, x_test, y_test


def train_vaild_split(x_train, y_train, split_index=45000):
    """Split the original training data into a new training dataset and a validation dataset."""
    x_train_new = x_train[:split_index]
    y_train_new = y_train[:split_index]
    x_valid = x_train[split_index:]
    y_valid = y_train[split_index:]
    return x_train_new, y_train_new, x_valid, y_valid
'''

IMAGE_UTILS = '''
import numpy as np

"""This script implements the functions for data augmentation and preprocessing."""


def parse_record(record, training):
    """Parse a record to an image and perform data preprocessing: [3072] -> [3, 32, 32]."""
    # Reshape from [depth * height * width] to [depth, height, width].
    depth_major = record.reshape((3, 32, 32))
    # Convert from [depth, height, width] to [height, width, depth]
    image = np.transpose(depth_major, [1, 2, 0])
    image = preprocess_image(image, training)
    # Convert from [height, width, depth] to [depth, height, width]
    image = np.transpose(image, [2, 0, 1])
    return image


def preprocess_image(image, training):
    """Preprocess a single image of shape [height, width, depth]."""
    if training:
        ### YOUR CODE HERE
        # Resize the image to add four extra pixels on each side.
        image = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="constant")
        # Randomly crop a [32, 32] section of the image.
        top, left = np.random.randint(0, 9), np.random.randint(0, 9)
        image = image[top:top + 32, left:left + 32, :]
        # Randomly flip the image horizontally.
        if np.random.rand() < 0.5:
            image = np.fliplr(image)
        ### END CODE HERE
    ### YOUR CODE HERE
    # Subtract off the mean and divide by the standard deviation of the pixels.
    mean = np.mean(image)
    std = max(np.std(image), 1.0 / np.sqrt(image.size))
    image = (image - mean) / std
    ### END CODE HERE
    return image
'''

MODEL = '''
import os
import time
import torch
import torch.nn as nn
import numpy as np
from tqdm import tqdm

from NetWork import ResNet
from ImageUtils import parse_record

"""This script defines the training, validation and testing process."""


class Cifar(nn.Module):
    def __init__(self, config):
        super(Cifar, self).__init__()
        self.config = config
        self.network = ResNet(
            self.config.resnet_version,
            self.config.resnet_size,
            self.config.num_classes,
            self.config.first_num_filters,
        )
        ### YOUR CODE HERE
        self.loss = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(
            self.network.parameters(), lr=self.config.learning_rate, momentum=0.9,
            weight_decay=self.config.weight_decay,
        )
        ### YOUR CODE HERE

    def train(self, x_train, y_train, max_epoch):
        self.network.train()
        num_samples = x_train.shape[0]
        num_batches = num_samples // self.config.batch_size
        print("### Training... ###")
        for epoch in range(1, max_epoch + 1):
            start_time = time.time()
            shuffle_index = np.random.permutation(num_samples)
            curr_x_train = x_train[shuffle_index]
            curr_y_train = y_train[shuffle_index]
            ### YOUR CODE HERE
            if epoch % 100 == 0:
                for group in self.optimizer.param_groups:
                    group["lr"] /= 10
            ### YOUR CODE HERE
            for i in range(num_batches):
                ### YOUR CODE HERE
                start = i * self.config.batch_size
                rows = curr_x_train[start:start + self.config.batch_size]
                x = torch.tensor(np.array([parse_record(row, True) for row in rows]), dtype=torch.float32).cuda()
                y = torch.tensor(curr_y_train[start:start + self.config.batch_size], dtype=torch.long).cuda()
                self.optimizer.zero_grad()
                loss = self.loss(self.network(x), y)
                loss.backward()
                self.optimizer.step()
                ### YOUR CODE HERE
                print("Batch {:d}/{:d} Loss {:.6f}".format(i, num_batches, loss), end="\\r", flush=True)
            duration = time.time() - start_time
            print("Epoch {:d} Loss {:.6f} Duration {:.3f} seconds.".format(epoch, loss, duration))
            if epoch % self.config.save_interval == 0:
                self.save(epoch)

    def test_or_validate(self, x, y, checkpoint_num_list):
        self.network.eval()
        print("### Test or Validation ###")
        for checkpoint_num in checkpoint_num_list:
            checkpointfile = os.path.join(self.config.modeldir, "model-%d.ckpt" % (checkpoint_num))
            self.load(checkpointfile)
            preds = []
            for i in tqdm(range(x.shape[0])):
                ### YOUR CODE HERE
                image = torch.tensor(parse_record(x[i], False), dtype=torch.float32).unsqueeze(0).cuda()
                with torch.no_grad():
                    preds.append(int(self.network(image).argmax(dim=1)))
                ### END CODE HERE
            y = torch.tensor(y)
            preds = torch.tensor(preds)
            print("Test accuracy: {:.4f}".format(torch.sum(preds == y) / y.shape[0]))

    def save(self, epoch):
        checkpoint_path = os.path.join(self.config.modeldir, "model-%d.ckpt" % (epoch))
        os.makedirs(self.config.modeldir, exist_ok=True)
        torch.save(self.network.state_dict(), checkpoint_path)
        print("Checkpoint has been created.")

    def load(self, checkpoint_name):
        ckpt = torch.load(checkpoint_name, map_location="cpu")
        self.network.load_state_dict(ckpt, strict=True)
        print("Restored model parameters from {}".format(checkpoint_name))
'''

MAIN = """
import os
import argparse
import numpy as np

from Model import Cifar
from DataReader import load_data, train_vaild_split

os.environ["CUDA_VISIBLE_DEVICES"] = "0"


def configure():
    parser = argparse.ArgumentParser()
    parser.add_argument("--resnet_version", type=int, default=1, help="the version of ResNet")
    parser.add_argument("--resnet_size", type=int, default=18, help="n: blocks per stage")
    parser.add_argument("--batch_size", type=int, default=128, help="training batch size")
    parser.add_argument("--num_classes", type=int, default=10, help="number of classes")
    parser.add_argument("--save_interval", type=int, default=10, help="save every this many epochs")
    parser.add_argument("--first_num_filters", type=int, default=16, help="number of filters of the first layer")
    parser.add_argument("--weight_decay", type=float, default=2e-4, help="weight decay rate")
    parser.add_argument("--learning_rate", type=float, default=0.1, help="initial learning rate")
    parser.add_argument("--modeldir", type=str, default="model_v1", help="model directory")
    return parser.parse_args()


def main(config):
    print("--- Preparing Data ---")
    data_dir = "/content/drive/My Drive/cifar-10-batches-py/"
    x_train, y_train, x_test, y_test = load_data(data_dir)
    x_train_new, y_train_new, x_valid, y_valid = train_vaild_split(x_train, y_train)
    model = Cifar(config).cuda()
    model.train(x_train_new, y_train_new, 200)
    model.test_or_validate(x_valid, y_valid, [160, 170, 180, 190, 200])


if __name__ == "__main__":
    config = configure()
    main(config)
"""

CORRECT = {"DataReader": DATA_READER, "ImageUtils": IMAGE_UTILS, "NetWork": NETWORK, "Model": MODEL, "main": MAIN}

MISTAKES: dict[str, tuple[str, str, str]] = {
    # name: (module, the correct text, what a student wrote instead)
    "missing_transpose": (
        "ImageUtils",
        "    depth_major = record.reshape((3, 32, 32))\n"
        "    # Convert from [depth, height, width] to [height, width, depth]\n"
        "    image = np.transpose(depth_major, [1, 2, 0])\n",
        "    image = record.reshape((32, 32, 3))\n",
    ),
    "crop_without_padding": (
        "ImageUtils",
        '        image = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="constant")\n',
        "",
    ),
    "flip_never_applied": ("ImageUtils", "            image = np.fliplr(image)\n", "            np.fliplr(image)\n"),
    "standardisation_mismatch": (
        "ImageUtils",
        "    mean = np.mean(image)\n    std = max(np.std(image), 1.0 / np.sqrt(image.size))\n",
        "    axes = (0, 1) if training else None\n"
        "    mean = np.mean(image, axis=axes)\n"
        "    std = np.maximum(np.std(image, axis=axes), 1.0 / np.sqrt(1024 if training else 3072))\n",
    ),
    "batch_norm_train_mode_at_test": (
        "Model",
        '        self.network.eval()\n        print("### Test or Validation ###")\n',
        '        print("### Test or Validation ###")\n',
    ),
    "gradients_never_zeroed": ("Model", "                self.optimizer.zero_grad()\n", ""),
}


def sources(mistake: str | None = None) -> dict[str, str]:
    """The folder's files (module name → source), with `mistake` made."""
    files = dict(CORRECT)
    if mistake is not None:
        module, correct, wrong = MISTAKES[mistake]
        assert correct in files[module], f"{mistake}: the correct text is not in {module}.py"
        files[module] = files[module].replace(correct, wrong)
    return files


def write_code_folder(folder: Path, mistake: str | None = None, **replaced: str) -> Path:
    """The whole code folder in a new directory; `replaced` swaps whole modules (name → source)."""
    folder.mkdir(parents=True)
    for name, source in {**sources(mistake), **replaced}.items():
        (folder / f"{name}.py").write_text(source)
    return folder
