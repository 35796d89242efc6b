using System.Text.Json;
using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Tokenizer;

namespace VarSharp.Tests.Support;

/// <summary>Writes a model folder (config.json + model.safetensors) holding a freshly initialised tiny tokenizer.</summary>
public static class TinyModelFolder
{
    public static string WriteTokenizer(string dir, VqVaeConfig cfg, int seed = 1)
    {
        Directory.CreateDirectory(dir);
        torch.manual_seed(seed);
        using var vae = new VqVae(cfg);
        var config = new Dictionary<string, object> { ["vqvae"] = cfg };
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(config, JsonConfig.Options));
        SafeTensors.Save(Path.Combine(dir, "model.safetensors"), vae.state_dict().Select(kv => KeyValuePair.Create("vae." + kv.Key, kv.Value)));
        return dir;
    }

    /// <summary>Writes an 8-bit PNG of the given size and channel count filled with a gradient.</summary>
    public static string WritePng(string path, int size, int channels)
    {
        using var ramp = torch.linspace(-1, 1, size * size).reshape(1, size, size);
        using var img = channels == 1 ? ramp.clone() : torch.cat([ramp, ramp.flip(1), ramp.flip(2)], 0);
        VarSharp.Data.ImageIO.SavePng(path, img);
        return path;
    }
}
