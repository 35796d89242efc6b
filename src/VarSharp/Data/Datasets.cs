namespace VarSharp.Data;

/// <summary>Opens a dataset by path: a folder of idx files (Fashion-MNIST) or an image folder.</summary>
public static class Datasets
{
    public static IImageDataset Open(string path, DataSplit split, int channels, int imageSize, ImageFolderOptions? options = null)
    {
        options ??= new ImageFolderOptions();
        if (!Directory.Exists(path))
            throw path == FashionMnist.DefaultDirectory
                ? new VarSharpException($"Fashion-MNIST is not installed at {path}; install it with: apt-get install dataset-fashion-mnist (scripts/setup.sh does).")
                : PathErrors.FolderMissing(path, "Data folder");
        return FashionMnist.IsIdxFolder(path)
            ? FashionMnist.Load(path, split, channels, imageSize, options.HFlip)
            : ImageFolderDataset.Open(path, split, channels, imageSize, options);
    }
}
