"""The built-in datasets: one ``register(DatasetSpec(...))`` entry each.

Checksums are the ones published by the authors or by torchvision (``md5:``). Where nobody
publishes one, ``checksum`` is ``None``: the size is pinned where known and the SHA-256 seen at the
first download is recorded beside the file and enforced on every later use.
"""

from __future__ import annotations

from featurestore.datasets.annotated import flowers_reader, read_cub, read_oxford_pets, read_stanford_dogs
from featurestore.datasets.arrays import cifar_reader, idx_reader
from featurestore.datasets.folders import folder_reader
from featurestore.datasets.registry import DatasetSpec, Resource, register
from featurestore.datasets.sources import read_imagefolder

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# Debian's dataset-fashion-mnist (0.0~git20200523.55506a9-1) ships the same idx data gzip-compressed
# anew, so its files have their own hashes, pinned here from that package.
_DEBIAN_FASHION = ("/usr/share/datasets/fashion-mnist",)
_FASHION_FILES = (
    ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
     "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
    ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
     "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
    ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
     "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
    ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
     "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
)

register(DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST (Zalando article images, 28x28 greyscale)",
    licence="MIT",
    citation="Xiao, Rasul, Vollgraf. Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning "
             "Algorithms. arXiv:1708.07747, 2017",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    resources=tuple(
        Resource(name, _FASHION_URL + name, f"md5:{md5}", local_dirs=_DEBIAN_FASHION,
                 local_checksums=(f"sha256:{debian}",))
        for name, md5, debian in _FASHION_FILES
    ),
    reader=idx_reader(FASHION_MNIST_CLASSES, {
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }),
    official_split=True, images=70_000, classes=10, size=30_878_645,
    notes="also read in place from the Debian package dataset-fashion-mnist",
))

register(DatasetSpec(
    name="cifar10",
    title="CIFAR-10 (32x32 colour, python version)",
    licence="no licence stated; free to use with the citation",
    citation="Krizhevsky. Learning Multiple Layers of Features from Tiny Images. Tech. report, U. Toronto, 2009",
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    resources=(Resource("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                        "md5:c58f30108f718f92721af3b95e74349a", unpack=True),),
    reader=cifar_reader("cifar-10-batches-py", {
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",),
    }),
    official_split=True, images=60_000, classes=10, size=170_498_071,
))

register(DatasetSpec(
    name="cub200",
    title="Caltech-UCSD Birds-200-2011",
    licence="research and non-commercial use (Caltech)",
    citation="Wah, Branson, Welinder, Perona, Belongie. The Caltech-UCSD Birds-200-2011 Dataset. "
             "CNS-TR-2011-001, Caltech, 2011",
    homepage="https://www.vision.caltech.edu/datasets/cub_200_2011/",
    resources=(Resource("CUB_200_2011.tgz", "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
                        "md5:97eceeb196236b17998738112f37df78", unpack=True),),
    reader=read_cub,
    official_split=True, images=11_788, classes=200, size=1_150_585_339,
))

FLOWERS102_CLASSES = (
    "pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea", "english marigold",
    "tiger lily", "moon orchid", "bird of paradise", "monkshood", "globe thistle", "snapdragon",
    "colt's foot", "king protea", "spear thistle", "yellow iris", "globe-flower", "purple coneflower",
    "peruvian lily", "balloon flower", "giant white arum lily", "fire lily", "pincushion flower",
    "fritillary", "red ginger", "grape hyacinth", "corn poppy", "prince of wales feathers",
    "stemless gentian", "artichoke", "sweet william", "carnation", "garden phlox", "love in the mist",
    "mexican aster", "alpine sea holly", "ruby-lipped cattleya", "cape flower", "great masterwort",
    "siam tulip", "lenten rose", "barbeton daisy", "daffodil", "sword lily", "poinsettia",
    "bolero deep blue", "wallflower", "marigold", "buttercup", "oxeye daisy", "common dandelion",
    "petunia", "wild pansy", "primula", "sunflower", "pelargonium", "bishop of llandaff", "gaura",
    "geranium", "orange dahlia", "pink-yellow dahlia?", "cautleya spicata", "japanese anemone",
    "black-eyed susan", "silverbush", "californian poppy", "osteospermum", "spring crocus",
    "bearded iris", "windflower", "tree poppy", "gazania", "azalea", "water lily", "rose",
    "thorn apple", "morning glory", "passion flower", "lotus", "toad lily", "anthurium", "frangipani",
    "clematis", "hibiscus", "columbine", "desert-rose", "tree mallow", "magnolia", "cyclamen",
    "watercress", "canna lily", "hippeastrum", "bee balm", "ball moss", "foxglove", "bougainvillea",
    "camellia", "mallow", "mexican petunia", "bromelia", "blanket flower", "trumpet creeper",
    "blackberry lily",
)
_FLOWERS_URL = "https://thor.robots.ox.ac.uk/datasets/flowers-102/"

register(DatasetSpec(
    name="flowers102",
    title="Oxford 102 Category Flower Dataset",
    licence="research use (Visual Geometry Group, Oxford; no licence stated)",
    citation="Nilsback, Zisserman. Automated Flower Classification over a Large Number of Classes. ICVGIP 2008",
    homepage="https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
    resources=(
        Resource("102flowers.tgz", _FLOWERS_URL + "102flowers.tgz", "md5:52808999861908f626f3c1f4e79d11fa", unpack=True),
        Resource("imagelabels.mat", _FLOWERS_URL + "imagelabels.mat", "md5:e0620be6f572b9609742df49c70aed4d"),
        Resource("setid.mat", _FLOWERS_URL + "setid.mat", "md5:a5357ecc9cb78c4bef273ce3793fc85c"),
    ),
    reader=flowers_reader(FLOWERS102_CLASSES),
    official_split=True, images=8_189, classes=102, size=344_862_509,
))

register(DatasetSpec(
    name="tf-flowers",
    title="TensorFlow flower photos (5 classes)",
    licence="CC-BY 2.0 (Flickr photographers, see LICENSE.txt in the archive)",
    citation="The TensorFlow Team. Flowers. 2019. http://download.tensorflow.org/example_images/flower_photos.tgz",
    homepage="https://www.tensorflow.org/datasets/catalog/tf_flowers",
    resources=(Resource("flower_photos.tgz",
                        "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz",
                        size=228_813_984, unpack=True),),
    reader=folder_reader("flower_photos"),
    official_split=False, images=3_670, classes=5, size=228_813_984,
))

register(DatasetSpec(
    name="stanford-dogs",
    title="Stanford Dogs (120 breeds, ImageNet images)",
    licence="research use under the ImageNet terms",
    citation="Khosla, Jayadevaprakash, Yao, Fei-Fei. Novel Dataset for Fine-Grained Image Categorization. "
             "FGVC workshop, CVPR 2011",
    homepage="http://vision.stanford.edu/aditya86/ImageNetDogs/",
    resources=(
        Resource("images.tar", "http://vision.stanford.edu/aditya86/ImageNetDogs/images.tar", unpack=True),
        Resource("lists.tar", "http://vision.stanford.edu/aditya86/ImageNetDogs/lists.tar", unpack=True),
    ),
    reader=read_stanford_dogs,
    official_split=True, images=20_580, classes=120, size=None,
))

_PETS_URL = "https://www.robots.ox.ac.uk/~vgg/data/pets/data/"

register(DatasetSpec(
    name="oxford-pets",
    title="Oxford-IIIT Pet (37 cat and dog breeds)",
    licence="CC BY-SA 4.0",
    citation="Parkhi, Vedaldi, Zisserman, Jawahar. Cats and Dogs. CVPR 2012",
    homepage="https://www.robots.ox.ac.uk/~vgg/data/pets/",
    resources=(
        Resource("images.tar.gz", _PETS_URL + "images.tar.gz", "md5:5c4f3ee8e5d25df40f4fd59a7f44e54c", unpack=True),
        Resource("annotations.tar.gz", _PETS_URL + "annotations.tar.gz", "md5:95a8c909bbe2e81eed6a22bccdf3f68f",
                 unpack=True),
    ),
    reader=read_oxford_pets,
    official_split=True, images=7_349, classes=37, size=None,
))

register(DatasetSpec(
    name="cats-vs-dogs",
    title="Microsoft Kaggle Cats and Dogs (PetImages; holds known corrupt files)",
    licence="Microsoft Research terms of the download page",
    citation="Elson, Douceur, Howell, Saul. Asirra: A CAPTCHA that Exploits Interest-Aligned Manual Image "
             "Categorization. ACM CCS 2007",
    homepage="https://www.microsoft.com/en-us/download/details.aspx?id=54765",
    resources=(Resource(
        "kagglecatsanddogs_5340.zip",
        "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip",
        size=824_887_076, unpack=True),),
    reader=folder_reader("PetImages"),
    official_split=False, images=25_000, classes=2, size=824_887_076,
    notes="corrupt files are quarantined at verification",
))

register(DatasetSpec(
    name="imagefolder",
    title="Your own images: a folder or archive with one sub-folder per class (--source PATH|URL)",
    licence="yours",
    citation="",
    homepage="",
    resources=(),
    reader=read_imagefolder,
    official_split=False, needs_source=True,
))
