// Reference masks and measurements from ImageJ 1.53t for tests/test_imagej_parity.py (see README.md).
// Run headless:  xvfb-run -a java -jar /usr/share/java/ij.jar -batch tests/data/imagej/make_refs.ijm <abs dir>
// Inputs in <dir>: fuzz_rois.zip, objects_labels.png, objects_rois.zip (make_inputs.py).
// Outputs in <dir>: cases/<name>.roi, cases.csv, cases_masks.zip, fuzz_masks.zip, objects_imagej.csv.

var rows = "";  // one CSV line per case
var ncases = 0;

dir = getArgument();
if (!endsWith(dir, "/")) dir = dir + "/";
setBatchMode(true);
File.makeDirectory(dir + "cases");
setForegroundColor(255, 255, 255);
setBackgroundColor(0, 0, 0);
run("Options...", "iterations=1 count=1 black");
call("ij.Prefs.set", "binary.blackBackground", "true");

// ---- A. named cases: made with macro commands, saved by ImageJ, re-opened (RoiDecoder), Create Mask
newImage("img", "8-bit black", 160, 120, 1);
makeOval(65.3, 5.7, 20.5, 15.2); finish("oval_subpixel");
makeRectangle(95.5, 5.25, 20.5, 10.5); finish("rect_subpixel");
makeRectangle(-3.5, 100.5, 10.25, 15.75); finish("rect_subpixel_negative");
makeOval(-5.5, 60.7, 17.2, 13.9); finish("oval_subpixel_negative");
makeOval(120, 90, 25, 18); finish("oval");
makeRectangle(130, 10, 20, 12); finish("rect");
makeRectangle(10, 40, 30, 20, 10); finish("roundrect_arc10");
makeRectangle(45, 40, 25, 17, 7); finish("roundrect_arc7");
makeRectangle(75, 40, 12, 30, 20); finish("roundrect_arc_exceeds_width");
makeRectangle(95.5, 40.25, 20.5, 15.5, 8); finish("roundrect_subpixel");
makeRectangle(145, 105, 20, 20, 9); finish("roundrect_offimage");
makePolygon(10, 70, 40, 65, 55, 90, 30, 110, 12, 95); finish("polygon");
makePolygon(10, 70, 40, 65, 55, 90, 30, 110, 12, 95); run("Fit Spline"); finish("spline_polygon");
makePolygon(60.5, 70.25, 85.75, 66.5, 95.2, 88.8, 70.1, 112.3, 58.9, 96.6);
run("Fit Spline"); finish("spline_polygon_subpixel");
makePolygon(100, 60, 155, 62, 150, 115, 105, 118, 120, 90);
run("Fit Spline"); finish("spline_polygon_long");
xs = newArray(36); ys = newArray(36);
for (i = 0; i < 36; i++) {
	r = 14 + 4 * sin(3 * i * PI / 18);
	xs[i] = round(40 + r * cos(i * PI / 18)); ys[i] = round(25 + r * sin(i * PI / 18));
}
makeSelection("freehand", xs, ys); finish("freehand");
makeSelection("freehand", xs, ys); run("Fit Spline"); finish("spline_freehand");
makeSelection("traced", newArray(20, 30, 30, 40, 40, 20), newArray(80, 80, 90, 90, 105, 105));
finish("traced");
makeSelection("traced", newArray(20, 30, 30, 40, 40, 20), newArray(80, 80, 90, 90, 105, 105));
run("Fit Spline"); finish("spline_traced");
makePolygon(100.5, 5.5, 130.5, 20.5, 110.25, 30.5, 100.5, 20.5); finish("polygon_halfpixel");
makeEllipse(20, 50, 60, 70, 0.5); finish("ellipse");
makeEllipse(70.5, 20.5, 100.5, 30.5, 0.6); finish("ellipse_halfpixel");
makeRotatedRectangle(100, 50, 140, 80, 15); finish("rotated_rect");
newImage("wand", "8-bit black", 160, 120, 1);  // a Wand-traced blob (traced on its own image)
setColor(255); fillOval(60, 80, 30, 22); fillRect(75, 95, 30, 10); doWand(70, 90);
saveAs("Selection", dir + "cases/wand_traced.roi"); close("wand");
openRoi(dir + "cases/wand_traced.roi"); finishOpened("wand_traced");

f = File.open(dir + "cases.csv");
print(f, "name,area_px,x,y,width,height,selection_type");
print(f, rows);
File.close(f);
run("Images to Stack", "name=cases title=mask_ use");
saveAs("ZIP", dir + "cases_masks.zip");
close("*");

// ---- B. random ROIs of every type (fuzz_rois.zip): ROI Manager (RoiDecoder), Create Mask
newImage("fuzzimg", "8-bit black", 80, 60, 1);
roiManager("reset");
roiManager("Open", dir + "fuzz_rois.zip");
n = roiManager("count");
for (i = 0; i < n; i++) {
	selectImage("fuzzimg");
	roiManager("select", i);
	run("Create Mask");
	rename("fz_" + IJ.pad(i, 4));
}
run("Images to Stack", "name=fuzz title=fz_ use");
saveAs("ZIP", dir + "fuzz_masks.zip");
close("*");

// ---- C. measurements of the ROIs written by unet.data.io.write_rois, uncalibrated and calibrated
open(dir + "objects_labels.png");
roiManager("reset");
roiManager("Open", dir + "objects_rois.zip");
run("Set Measurements...", "area mean centroid perimeter redirect=None decimal=9");
f = File.open(dir + "objects_imagej.csv");
print(f, "name,calibrated,Area,Mean,X,Y,Perim.");
for (pass = 0; pass < 2; pass++) {
	if (pass == 1) run("Properties...", "channels=1 slices=1 frames=1 pixel_width=0.4 pixel_height=0.6 voxel_depth=1 unit=um");
	for (i = 0; i < roiManager("count"); i++) {
		roiManager("select", i);
		List.setMeasurements;
		print(f, Roi.getName + "," + pass + "," + d2s(List.getValue("Area"), 12) + ","
			+ d2s(List.getValue("Mean"), 12) + "," + d2s(List.getValue("X"), 12) + "," + d2s(List.getValue("Y"), 12) + ","
			+ d2s(List.getValue("Perim."), 12));
	}
}
File.close(f);
close("*");
print("ImageJ " + getVersion() + ": " + ncases + " cases, " + n + " fuzz ROIs");

function finish(name) {
	saveAs("Selection", dir + "cases/" + name + ".roi");
	run("Select None");
	openRoi(dir + "cases/" + name + ".roi");
	finishOpened(name);
}

function openRoi(path) {  // the ROI as read from the file (ij.io.RoiDecoder), on the 160 x 120 image
	selectImage("img");
	roiManager("reset");
	roiManager("Open", path);
	roiManager("select", 0);
}

function finishOpened(name) {
	getSelectionBounds(x, y, w, h);
	t = selectionType();
	area = getValue("Area");
	run("Create Mask");
	rename("mask_" + IJ.pad(ncases, 3));
	ncases++;
	selectImage("img");
	run("Select None");
	if (rows != "") rows = rows + "\n";
	rows = rows + name + "," + area + "," + x + "," + y + "," + w + "," + h + "," + t;
}
