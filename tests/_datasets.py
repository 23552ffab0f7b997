"""Small datasets shared by tests in several folders."""

from torch.utils.data import Dataset


class ListDataset(Dataset):
    """Map-style dataset over a list: ``dataset[i] is items[i]``."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]
