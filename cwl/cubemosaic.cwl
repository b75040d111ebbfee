cwlVersion: v1.2

$namespaces:
  s: https://schema.org/
  calrissian: https://calrissian-cwl.github.io/schema#

$schemas:
  - http://schema.org/version/9.0/schemaorg-current-http.rdf

s:softwareVersion: 0.1.0
s:name: cubemosaic
s:description: Sentinel-2 L2A monthly cloud-free median mosaics (STAC -> Zarr cube -> COGs + STAC catalog)
s:codeRepository: https://github.com/cubemosaic/cubemosaic
s:license: https://spdx.org/licenses/MIT
s:keywords: Sentinel-2, cloud-free mosaic, median composite, Zarr, COG, STAC, Dask Gateway
s:author:
  - class: s:Organization
    s:name: cubemosaic developers

$graph:
- class: Workflow
  id: main
  label: Sentinel-2 L2A monthly cloud-free median mosaics
  doc: >-
    Two steps: `cube` searches the catalog and writes the masked, harmonised Zarr cube;
    `mosaic` computes the monthly composites (the median, or the statistics asked for) on a Dask
    Gateway cluster and exports COGs per month with a self-contained STAC catalog.
  requirements:
    InlineJavascriptRequirement: {}
    NetworkAccess:
      networkAccess: true
  inputs:
    start-date:
      type: string
      doc: first day, YYYY-MM-DD
      default: "2021-01-01"
    end-date:
      type: string
      doc: last day, YYYY-MM-DD (inclusive)
      default: "2021-06-30"
    aoi:
      type: string
      doc: min_lon,min_lat,max_lon,max_lat (WGS84)
      default: "-122.27508544921875,47.54687159892238,-121.96128845214844,47.745787772920934"
    bands:
      type: string[]
      doc: output bands by common name (red, green, blue, nir, ...) or asset key
      default: ["red", "green", "blue", "nir"]
    collection:
      type: string
      default: "sentinel-2-l2a"
    resolution:
      type: int
      doc: output pixel size in metres
      default: 20
    tile-size:
      type: int
      doc: >-
        pixels a side of a tile, the work unit of a large area: a larger grid is cut into tiles of a
        fixed grid (outputs per tile, a STAC Collection and a VRT per month over them)
      default: 4096
    max-items:
      type: int?
      doc: stop after this many scenes
    max-cloud-cover:
      type: int
      doc: scene-level cloud cover limit in percent
      default: 100
    catalog-url:
      type: string?
      doc: a STAC API URL or static ItemCollection/catalog file; default the Planetary Computer
    zarr-dir:
      type: string?
      doc: >-
        object storage for the Zarr stores (s3://bucket/prefix, gs://, az://), which Dask Gateway
        workers write themselves; unset, the cube travels from step to step as a Directory
    keep-cube:
      type: boolean
      doc: also return the Zarr cube (cube.zarr) as the `cube` output (it is large; off by default)
      default: false
    statistic:
      type: string[]
      doc: >-
        the composites, the first the month's mosaic: median, p<NN> (a percentile, e.g. p25),
        medoid, geomedian; each its own COG and STAC asset
      default: ["median"]
    percentile-method:
      type: string
      doc: "numpy's percentile method for the p<NN> statistics (linear, lower, higher, nearest, midpoint, hazen, ...)"
      default: "linear"
    provenance:
      type: string[]
      doc: "per-pixel layers beside the count, each a COG and STAC asset: first_day, last_day, iqr"
      default: []
  outputs:
    cube:
      type: Directory?
      doc: the Zarr cube (cube.zarr), only with keep-cube (and without zarr-dir, which keeps it there)
      outputSource: step_cube/kept-cube
    stac-catalog:
      type: Directory
      doc: >-
        catalog.json and one folder per month with its COG, count and STAC item; for an area cut
        into tiles, collection.json, a VRT per month and one folder per tile
      outputSource: step_mosaic/stac-catalog
  steps:
    step_cube:
      run: "#cube"
      in:
        start-date: start-date
        end-date: end-date
        aoi: aoi
        bands: bands
        collection: collection
        resolution: resolution
        tile-size: tile-size
        max-items: max-items
        max-cloud-cover: max-cloud-cover
        catalog-url: catalog-url
        zarr-dir: zarr-dir
        keep-cube: keep-cube
      out: [cube, kept-cube]
    step_mosaic:
      run: "#mosaic"
      in:
        cube: step_cube/cube
        zarr-dir: zarr-dir
        statistic: statistic
        percentile-method: percentile-method
        provenance: provenance
      out: [stac-catalog]

- class: CommandLineTool
  id: cube
  label: search the catalog and write the Zarr cube
  requirements:
    InlineJavascriptRequirement: {}
    DockerRequirement:
      dockerPull: ghcr.io/cubemosaic/cubemosaic:0.1.0
    ResourceRequirement:
      coresMin: 1
      ramMin: 2048
    NetworkAccess:
      networkAccess: true
    calrissian:DaskGatewayRequirement:
      workerCores: 1
      workerCoresLimit: 1
      workerMemory: "4G"
      clusterMaxCores: 8
      clusterMaxMemory: "32G"
  baseCommand: [python, -m, cubemosaic]
  arguments:
    - stage=cube
    - $("output_dir=" + runtime.outdir)
  inputs:
    start-date:
      type: string
      inputBinding: {prefix: "start_date=", separate: false}
    end-date:
      type: string
      inputBinding: {prefix: "end_date=", separate: false}
    aoi:
      type: string
      inputBinding: {valueFrom: '$("aoi=[" + self + "]")'}
    bands:
      type: string[]
      inputBinding: {valueFrom: '$("bands=[" + self.join(",") + "]")'}
    collection:
      type: string
      inputBinding: {prefix: "collection=", separate: false}
    resolution:
      type: int
      inputBinding: {prefix: "resolution=", separate: false}
    tile-size:
      type: int
      default: 4096
      inputBinding: {prefix: "tile_size=", separate: false}
    max-items:
      type: int?
      inputBinding: {prefix: "max_items=", separate: false}
    max-cloud-cover:
      type: int
      inputBinding: {prefix: "max_cloud_cover=", separate: false}
    catalog-url:
      type: string?
      inputBinding: {prefix: "catalog.url=", separate: false}
    zarr-dir:
      type: string?
      inputBinding: {prefix: "zarr_dir=", separate: false}
    keep-cube:
      type: boolean
      default: false
  outputs:
    cube:
      type: Directory?
      doc: the cube, for the mosaic step
      outputBinding:
        glob: cube.zarr
    kept-cube:
      type: Directory?
      doc: the cube again when keep-cube asks for it, else nothing (the platform stages out workflow outputs)
      outputBinding:
        glob: '$(inputs["keep-cube"] ? "cube.zarr" : [])'

- class: CommandLineTool
  id: mosaic
  label: monthly composites on Dask, COGs per month, a STAC catalog
  requirements:
    InlineJavascriptRequirement: {}
    DockerRequirement:
      dockerPull: ghcr.io/cubemosaic/cubemosaic:0.1.0
    ResourceRequirement:
      coresMin: 1
      ramMin: 2048
    NetworkAccess:
      networkAccess: true
    calrissian:DaskGatewayRequirement:
      workerCores: 1
      workerCoresLimit: 1
      workerMemory: "4G"
      clusterMaxCores: 8
      clusterMaxMemory: "32G"
  baseCommand: [python, -m, cubemosaic]
  arguments:
    - stage=mosaic
    - $("output_dir=" + runtime.outdir)
    - '$("zarr_dir=" + (inputs["zarr-dir"] ? inputs["zarr-dir"] : runtime.tmpdir))'
    - '$("cube_url=" + (inputs.cube ? inputs.cube.path : inputs["zarr-dir"] + "/cube.zarr"))'
  inputs:
    cube:
      type: Directory?
    zarr-dir:
      type: string?
    statistic:
      type: string[]
      default: ["median"]
      inputBinding: {valueFrom: '$("statistic=[" + self.join(",") + "]")'}
    percentile-method:
      type: string
      default: "linear"
      inputBinding: {prefix: "percentile_method=", separate: false}
    provenance:
      type: string[]
      default: []
      inputBinding: {valueFrom: '$("provenance=[" + self.join(",") + "]")'}
  outputs:
    stac-catalog:
      type: Directory
      outputBinding:
        glob: .
