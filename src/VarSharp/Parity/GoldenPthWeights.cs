using VarSharp.Checkpoints.Torch;
using static TorchSharp.torch;

namespace VarSharp.Parity;

/// <summary>
/// Loads a golden case's weights from its torch.save files (weights_vae.pth, weights_var.pth) through the safe
/// <see cref="TorchCheckpoint"/> reader, keyed `vae.*` and `var.*` like weights.safetensors; a weights loader for
/// <see cref="GoldenCase.Open"/>.
/// </summary>
public static class GoldenPthWeights
{
    public const string VaeFile = "weights_vae.pth";
    public const string VarFile = "weights_var.pth";

    public static Dictionary<string, Tensor> Load(string dir)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (file, prefix) in new[] { (VaeFile, "vae."), (VarFile, "var.") })
            {
                var path = Path.Combine(dir, file);
                if (!File.Exists(path))
                    throw new VarSharpException($"Golden case folder {dir} has no {file}; --from-pth needs {VaeFile} and {VarFile}.");
                foreach (var (name, tensor) in TorchCheckpoint.Load(path, prefix)) result.Add(name, tensor);
            }
            return result;
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
    }
}
